"""docs/grafana/raftq.json: a dashboard Grafana's import accepts, whose queries ask only for
series a real node's ``/metrics`` exports (names and label names)."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from raftq.jobs.commands import Claim, ClaimResult, Complete, Enqueue
from raftq.transport.wire import CommandReply, SubmitCommand
from tests.node_helpers import RawClient, free_ports, running_cluster, spec, wait_for_leader
from tests.test_metrics import scrape

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana" / "raftq.json"

PROMETHEUS_LABELS = {"instance", "job"}
"""Labels Prometheus adds to every scraped series."""


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text in the dashboard: panel targets and query variables."""
    texts = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            texts.append(variable["query"]["query"])
    return texts


def exported_series(body: str) -> dict[str, set[str]]:
    """Series name -> label names, for what ``/metrics`` declares (its TYPE lines, so a labelled
    counter with no sample yet still counts) and what it samples."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(body):
        for suffix in suffixes.get(family.type, ("",)):
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def query_problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    names = set(re.findall(r"\braftq_[a-z0-9_]+", expr))
    labels_available = set(PROMETHEUS_LABELS)
    for name in sorted(names):
        if name not in exported:
            problems.append(f"{expr!r}: {name} is not exported by a node")
            continue
        labels_available |= exported[name]
    for name, matchers in re.findall(r"\b(raftq_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in exported.get(name, set()) | PROMETHEUS_LABELS:
                problems.append(f"{expr!r}: {name} has no label {label}")
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in (word.strip() for word in grouping.split(",")):
            if label and label not in labels_available:
                problems.append(f"{expr!r}: grouping by {label}, which no series here has")
    for opening, closing in ("()", "[]", "{}"):
        if expr.count(opening) != expr.count(closing):
            problems.append(f"{expr!r}: unbalanced {opening}{closing}")
    if not names:
        problems.append(f"{expr!r}: asks for no raftq metric")
    return problems


def import_problems(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana's dashboard import needs: a title, a schemaVersion, panels with ids, grid
    positions and Prometheus targets, and a datasource variable every panel uses (so the
    import asks which Prometheus to use instead of naming one that does not exist)."""
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append("schemaVersion must be an integer >= 36 (Grafana 9+)")
    if not dashboard.get("title") or not dashboard.get("uid"):
        problems.append("a dashboard needs a title and a uid")
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    datasource = variables.get("datasource", {})
    if datasource.get("type") != "datasource" or datasource.get("query") != "prometheus":
        problems.append("no Prometheus datasource variable named 'datasource'")
    ids = [panel.get("id") for panel in dashboard["panels"]]
    if len(set(ids)) != len(ids) or not all(isinstance(id_, int) for id_ in ids):
        problems.append(f"panel ids must be distinct integers: {ids}")
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        where = f"panel {panel.get('title')!r}"
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(key), int) for key in "xywh"):
            problems.append(f"{where}: gridPos needs integer x, y, w, h")
            continue
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: wider than Grafana's 24 columns")
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        if cells & occupied:
            problems.append(f"{where}: overlaps another panel")
        occupied |= cells
        if panel["type"] == "row":
            continue
        if panel["type"] not in {"timeseries", "stat", "gauge", "table", "bargauge"}:
            problems.append(f"{where}: unexpected panel type {panel['type']}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for part in [panel, *targets]:
            if part.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                problems.append(f"{where}: not on the datasource variable")
        refs = [target.get("refId") for target in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            problems.append(f"{where}: refIds must be present and distinct")
    text = json.dumps(dashboard)
    for used in set(re.findall(r"\$\{?([a-z_]+)", text)) - {"__rate_interval", "__range"}:
        if used not in variables:
            problems.append(f"${used} is used but not defined")
    return problems


def test_the_dashboard_has_what_grafanas_import_needs() -> None:
    dashboard = load_dashboard()
    assert import_problems(dashboard) == []
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(panels) >= 10


def test_the_checks_catch_a_broken_dashboard() -> None:
    """The checks above can fail: each of these faults is reported."""
    exported = {"raftq_raft_term": set(), "raftq_jobs": {"queue", "state"}}
    assert query_problems("raftq_raft_term", exported) == []
    assert query_problems("raftq_raft_terms", exported)
    assert query_problems('raftq_jobs{color="red"}', exported)
    assert query_problems("sum by (color) (raftq_jobs)", exported)
    assert query_problems("sum(rate(raftq_jobs[5m])", exported)
    good = load_dashboard()
    for damage in (
        lambda d: d.update(schemaVersion="39"),
        lambda d: d["templating"]["list"].pop(0),
        lambda d: d["panels"][1]["targets"][0].update(datasource={"uid": "my-prometheus"}),
        lambda d: d["panels"][2].update(gridPos=dict(d["panels"][1]["gridPos"])),
        lambda d: d["panels"][1]["targets"].clear(),
    ):
        broken = copy.deepcopy(good)
        damage(broken)
        assert import_problems(broken), damage


async def test_every_query_asks_for_series_a_node_exports(tmp_path: Path) -> None:
    (metrics_port,) = free_ports(1)
    async with running_cluster(
        tmp_path, 1, metrics_addr=f"127.0.0.1:{metrics_port}", snapshot_entries=3
    ) as nodes:
        leader = await wait_for_leader(nodes)
        async with RawClient.connect(leader.config.address) as client:
            await client.call(SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(),) * 2)))
            claimed = await client.call(SubmitCommand(command=Claim(now_ms=0, claimer="w")))
            assert isinstance(claimed, CommandReply)
            assert isinstance(claimed.result, ClaimResult)
            lease = claimed.result.leases[0]
            done = Complete(now_ms=0, job_id=lease.job_id, fence=lease.fence, result=b"1")
            await client.call(SubmitCommand(command=done))
        # A refused handshake, so the labelled refusal counter has a sample with its label.
        with contextlib.suppress(Exception), trio.fail_after(10):
            async with RawClient.connect(leader.config.address, cluster_id="another-cluster"):
                pass
        _, body = await scrape(leader.metrics_port)
    exported = exported_series(body)
    assert "reason" in exported["raftq_connections_refused_total"]
    problems = [
        problem for expr in queries(load_dashboard()) for problem in query_problems(expr, exported)
    ]
    assert problems == []
    used = {name for expr in queries(load_dashboard()) for name in re.findall(r"raftq_\w+", expr)}
    contract = {"raftq_jobs_enqueued_total", "raftq_jobs_finished_total", "raftq_jobs",
                "raftq_raft_term", "raftq_raft_is_leader", "raftq_raft_commit_index",
                "raftq_raft_applied_index", "raftq_raft_leader_changes_total",
                "raftq_wal_bytes_total", "raftq_recovery_seconds"}  # fmt: skip
    assert contract <= used, contract - used
    for histogram in ("job_run", "job_wait", "wal_fsync", "snapshot"):
        assert any(name.startswith(f"raftq_{histogram}_seconds") for name in used), histogram
