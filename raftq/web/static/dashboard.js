// raftq dashboard: live updates without reloading, and the overview's throughput chart.
// While the tab is visible, the page is fetched again every data-refresh-ms with the header
// X-Raftq-Live: 1; the server answers with the page's #live region only, which replaces the
// old one. A hidden tab asks nothing (document.visibilityState) and catches up when shown.
"use strict";
(() => {
  const live = document.getElementById("live");
  const state = document.getElementById("live-state");
  const every = Number(document.body.dataset.refreshMs) || 0;
  const samples = [];  // {at, enqueued, finished} from each render of #rates, oldest first
  const SAMPLES_MAX = 90;
  let busy = false;
  window.raftqRefreshes = 0;

  function show(text, kind) {
    if (!state) return;
    state.textContent = text;
    state.className = "live-state " + (kind || "");
  }

  function editing() {
    const active = document.activeElement;
    return active && live.contains(active) && active.matches("input, select, textarea");
  }

  async function refresh() {
    if (busy || document.visibilityState !== "visible" || editing()) return;
    busy = true;
    try {
      const response = await fetch(location.href, {
        headers: { "X-Raftq-Live": "1" }, credentials: "same-origin", cache: "no-store",
      });
      if (response.redirected || !(response.headers.get("content-type") || "").startsWith("text/html")) {
        show("stale", "stale");
        return;
      }
      live.innerHTML = await response.text();
      window.raftqRefreshes += 1;
      show(response.ok ? "live" : "cluster unavailable", response.ok ? "" : "stale");
      chart();
    } catch (error) {
      show("offline", "stale");
    } finally {
      busy = false;
    }
  }

  function chart() {
    const rates = document.getElementById("rates");
    const svg = document.getElementById("rate-chart");
    if (!rates || !svg) return;
    const sample = {
      at: Number(rates.dataset.atMs), enqueued: Number(rates.dataset.enqueued),
      finished: Number(rates.dataset.finished),
    };
    const last = samples[samples.length - 1];
    if (last && sample.at <= last.at) return;
    samples.push(sample);
    if (samples.length > SAMPLES_MAX) samples.shift();
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const seconds = (samples[i].at - samples[i - 1].at) / 1000;
      points.push({
        at: samples[i].at,
        enqueued: Math.max(0, (samples[i].enqueued - samples[i - 1].enqueued) / seconds),
        finished: Math.max(0, (samples[i].finished - samples[i - 1].finished) / seconds),
      });
    }
    draw(svg, points);
    const newest = points[points.length - 1];
    for (const key of ["enqueued", "finished"]) {
      const output = document.getElementById(key + "-rate");
      if (output) output.textContent = newest ? newest[key].toFixed(1) : "–";
    }
  }

  function draw(svg, points) {
    // Newest at the right edge, one step per sample; the scale is a round number above the
    // highest rate shown, labelled at the top left.
    const width = svg.clientWidth || 600, height = 160, top = 18, step = width / (SAMPLES_MAX - 2);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const highest = Math.max(0, ...points.map((p) => Math.max(p.enqueued, p.finished)));
    const high = roundUp(highest * 1.1);
    const x = (i) => width - (points.length - 1 - i) * step;
    const y = (v) => height - 1 - ((height - top - 1) * v) / high;
    const line = (key) => points.map((p, i) => `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    svg.innerHTML =
      `<line class="grid" x1="0" x2="${width}" y1="${y(high)}" y2="${y(high)}"/>` +
      `<line class="grid" x1="0" x2="${width}" y1="${y(high / 2)}" y2="${y(high / 2)}"/>` +
      `<line class="grid" x1="0" x2="${width}" y1="${y(0)}" y2="${y(0)}"/>` +
      `<text x="2" y="${y(high) - 5}" class="scale">${high}/s</text>` +
      `<polyline class="enqueued" points="${line("enqueued")}"/>` +
      `<polyline class="finished" points="${line("finished")}"/>`;
  }

  function roundUp(value) {
    if (value <= 1) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const factor of [1, 2, 2.5, 5, 10]) {
      if (value <= factor * magnitude) return factor * magnitude;
    }
    return 10 * magnitude;
  }

  if (!live) return;
  chart();
  if (!every) return;
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      show("live");
      refresh();
    } else {
      show("paused", "paused");
    }
  });
})();
