"""The cluster secret, and the HMAC challenge-response of the handshake.

Both sides challenge: the caller's ``Hello`` carries a fresh nonce, the node answers with its
own nonce and a proof over both (``Challenge``), the caller checks that proof and sends its
own (``Proof``). A proof is HMAC-SHA256 under the secret of a transcript that names the role
(so a node's proof is never a valid caller's proof: no reflection), the cluster, both parties
and both nonces (so a recorded handshake proves nothing on a new connection). The secret
itself never crosses the wire.

Nonces come from ``secrets`` (the operating system's CSPRNG), and only when a secret is
configured: a cluster without one (the simulator, tests on loopback) draws no randomness here.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets

import attrs

from raftq import limits
from raftq.errors import ConfigError

NONCE_BYTES = 32
"""256 bits: a nonce never repeats by chance, so a repeated one is a replay."""

PROOF_BYTES = 32
"""An HMAC-SHA256 tag."""

SECRET_BYTES_MIN = 16
"""A shorter secret could be guessed offline from one recorded handshake."""

SECRET_FILE_BYTES_MAX = 4096
"""A secret file is a line of random text; anything larger is the wrong file."""

ROLE_NODE = b"node"
ROLE_CALLER = b"caller"


def load_secret(path: str) -> bytes:
    """The cluster secret in ``path`` (surrounding whitespace ignored), or ``ConfigError``."""
    try:
        with open(path, "rb") as file:
            data = file.read(SECRET_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise ConfigError(f"secret file {path}: {error.strerror or error}") from None
    return check_secret(data, f"secret file {path}")


def check_secret(secret: bytes | str, where: str = "the secret") -> bytes:
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(data) > SECRET_FILE_BYTES_MAX:
        raise ConfigError(f"{where} is over {SECRET_FILE_BYTES_MAX} bytes: not a secret")
    data = data.strip()
    if len(data) < SECRET_BYTES_MIN:
        raise ConfigError(
            f"{where} holds {len(data)} bytes; use at least {SECRET_BYTES_MIN}, e.g. "
            "`head -c 32 /dev/urandom | base64 > secret`"
        )
    return data


def secret_from_environment() -> bytes | None:
    """The secret named by ``$RAFTQ_SECRET_FILE``, or None if it is not set."""
    path = os.environ.get("RAFTQ_SECRET_FILE", "")
    return load_secret(path) if path else None


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


@attrs.frozen(kw_only=True)
class Transcript:
    """What one handshake's proofs cover."""

    cluster_id: str
    caller_id: str
    """The calling peer's id, or "" for a client."""
    node_id: str
    caller_nonce: bytes
    node_nonce: bytes

    def proof(self, secret: bytes, role: bytes) -> bytes:
        """HMAC-SHA256 under ``secret`` of the role and the transcript; every part is
        length-prefixed, so no two different transcripts share an encoding."""
        parts = (
            b"raftq handshake v1",
            role,
            self.cluster_id.encode(),
            self.caller_id.encode(),
            self.node_id.encode(),
            self.caller_nonce,
            self.node_nonce,
        )
        message = b"".join(len(part).to_bytes(4, "big") + part for part in parts)
        return hmac.new(secret, message, hashlib.sha256).digest()


def proofs_match(expected: bytes, received: bytes) -> bool:
    return hmac.compare_digest(expected, received)  # constant time: no byte-by-byte oracle


class RecentNonces:
    """The callers' nonces seen lately, to refuse a replayed ``Hello`` by name. (A replay past
    this window still fails: the node's own nonce is fresh, so the old proof does not fit.)"""

    def __init__(self, capacity: int = limits.HANDSHAKE_NONCES_REMEMBERED) -> None:
        assert capacity > 0, capacity
        self._capacity = capacity
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()

    def first_time(self, nonce: bytes) -> bool:
        """Remember ``nonce``; False if it was seen already."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
