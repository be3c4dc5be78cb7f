"""Signing in to the dashboard: a form that takes a token (``raftq web --print-token USER``)
and keeps it in an HttpOnly, SameSite=Strict cookie; signing out forgets it."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from raftq import limits
from raftq.web.auth import TOKEN_COOKIE, user_of
from raftq.web.context import web_context

LOGIN_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raftq: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>raftq</h1>{problem}
<form method="post" action="{action}">
<label>Token <input type="password" name="token" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>
<p>Make a token with <code>raftq web --print-token YOUR_NAME</code> on a host that has the
cluster's secret file.</p></main></body></html>
"""


async def login_form(request: Request) -> Response:
    return _form(request, "")


async def login(request: Request) -> Response:
    context = web_context(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.WEB_BODY_BYTES_MAX:
            return _form(request, "That is not a token.", status=400)
    token = parse_qs(body.decode("utf-8", errors="replace")).get("token", [""])[0].strip()
    if context.secret is None:
        return RedirectResponse(_root(request) + "/", status_code=303)
    user = user_of(context.secret, token)
    if user is None:
        return _form(request, "That token is not valid for this cluster.", status=401)
    response = RedirectResponse(_root(request) + "/", status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=_root(request) + "/",
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(_root(request) + "/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path=_root(request) + "/")
    return response


def _form(request: Request, problem: str, status: int = 200) -> Response:
    paragraph = f"<p role=alert>{html.escape(problem)}</p>" if problem else ""
    action = html.escape(_root(request) + "/login")
    return HTMLResponse(LOGIN_FORM.format(problem=paragraph, action=action), status_code=status)


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def login_routes() -> list[BaseRoute]:
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
