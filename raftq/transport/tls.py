"""TLS for every connection: the contexts a node and a client use, and naming TLS failures.

A node serves with its certificate (``--tls-cert``, ``--tls-key``) and verifies, against
``--tls-ca``, the certificate of whoever it calls (peers, the leader it forwards to) by the host
name or address it dialled. Callers that hold a certificate present it, and the node verifies
it (an expired or foreign one is refused); callers without one are let in by TLS and must still
prove the cluster secret in the handshake, which is what authenticates them.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
import trio
from anyio.streams.tls import TLSStream

from raftq.errors import ConfigError


@attrs.frozen(kw_only=True)
class TlsConfig:
    """Paths to PEM files; a node needs all three, a client at least ``ca_file``."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""

    def __attrs_post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--tls-cert and --tls-key go together")
        if not self.ca_file:
            raise ConfigError("TLS needs --tls-ca (the CA that signed the nodes' certificates)")

    def server_context(self) -> ssl.SSLContext:
        if not self.cert_file:
            raise ConfigError("a node serving TLS needs --tls-cert and --tls-key")
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_OPTIONAL  # a presented certificate must verify
        return context

    def client_context(self) -> ssl.SSLContext:
        return self._context(ssl.Purpose.SERVER_AUTH)

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(purpose, cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"TLS files ({self._files()}): {error}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _files(self) -> str:
        return ", ".join(path for path in (self.cert_file, self.key_file, self.ca_file) if path)


def tls_config_from(cert_file: str = "", key_file: str = "", ca_file: str = "") -> TlsConfig | None:
    """None when no TLS option is given; otherwise a checked ``TlsConfig``."""
    if not (cert_file or key_file or ca_file):
        return None
    return TlsConfig(cert_file=cert_file, key_file=key_file, ca_file=ca_file)


def tls_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a broken stream, if that is what broke it."""
    cause: BaseException | None = error
    for _ in range(4):  # trio wraps the SSLError as the cause of a BrokenResourceError
        if isinstance(cause, ssl.SSLError):
            return cause
        if cause is None:
            return None
        cause = cause.__cause__
    return None


def refusal_reason(error: ssl.SSLError) -> str:
    """A short metric label for a failed TLS handshake."""
    text = f"{error.reason} {error}".lower()
    if isinstance(error, ssl.SSLCertVerificationError) or "certificate" in text:
        return "tls_certificate"
    if any(marker in text for marker in ("wrong_version", "http_request", "unknown_protocol")):
        return "tls_plaintext"
    return "tls_handshake"


async def open_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap an outbound stream and finish the TLS handshake; the stream is closed on failure."""
    tls_stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    try:
        await tls_stream.do_handshake()
    except trio.BrokenResourceError:
        with trio.move_on_after(1):
            await send_alert(tls_stream)
        await trio.aclose_forcefully(stream)
        raise
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return tls_stream


async def send_alert(stream: trio.SSLStream[trio.abc.Stream]) -> None:
    """Send the TLS alert that says why a handshake failed (e.g. "certificate expired").
    trio drops what OpenSSL queued once a handshake fails, so without this the other side
    sees only a closed stream and cannot tell its operator why."""
    outgoing = getattr(stream, "_outgoing", None)  # trio's private BIO (trio is pinned)
    if isinstance(outgoing, ssl.MemoryBIO) and outgoing.pending:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.transport_stream.send_all(outgoing.read())


T = TypeVar("T")


class _AlertingTLSStream(TLSStream):
    """AnyIO's TLS stream, but a failed handshake sends the alert OpenSSL queued (as
    ``send_alert`` does for Trio): without it the node sees only a closed connection and
    cannot count or log why its certificate was refused."""

    async def _call_sslobject_method(  # type: ignore[override]
        self, func: Callable[..., T], *args: Any
    ) -> T:
        try:
            return await super()._call_sslobject_method(func, *args)
        except ssl.SSLError:
            pending = self._write_bio.read() if self._write_bio.pending else b""  # anyio pinned
            if pending:
                with anyio.move_on_after(1), contextlib.suppress(Exception):
                    await self.transport_stream.send(pending)
            raise


async def open_client_tls(
    stream: anyio.abc.ByteStream, context: ssl.SSLContext, host: str
) -> anyio.abc.ByteStream:
    """The client side of ``open_tls`` on AnyIO: wrap, verify the node's certificate for
    ``host``, finish the handshake; the stream is closed on failure (``ssl.SSLError`` then
    says why, e.g. ``SSLCertVerificationError``)."""
    try:
        return await _AlertingTLSStream.wrap(
            stream, hostname=host, ssl_context=context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
