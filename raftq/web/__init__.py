"""The dashboard and HTTP JSON API (docs/web.md): ``asgi_app`` builds it."""

from raftq.web.app import asgi_app
from raftq.web.auth import token_for

__all__ = ["asgi_app", "token_for"]
