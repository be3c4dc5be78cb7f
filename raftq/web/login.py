"""Signing in to the dashboard: a form that takes a token (``raftq web --print-token USER``)
and keeps it in an HttpOnly, SameSite=Strict cookie until the token expires; signing out
forgets it."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from raftq import limits
from raftq.web.auth import TOKEN_COOKIE, TokenRefused, check_token, token_expiry_s
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


WHY = {"expired": "Your token expired: sign in with a new one."}
"""Why the guard sent a browser here (``?why=``): fixed sentences, never the request's text."""


async def login_form(request: Request) -> Response:
    return _form(request, WHY.get(request.query_params.get("why", ""), ""))


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
    now_s = context.clock()
    try:
        check_token(context.secret, token, now_s=now_s)
    except TokenRefused as refused:
        problem = refused.message  # expired, or without an expiry: says what to do
        if refused.code == "unauthorized":
            problem = "That token is not valid for this cluster."
        return _form(request, problem, status=401)
    response = RedirectResponse(_root(request) + "/", status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=max(1, token_expiry_s(token) - int(now_s)),  # the browser drops it then
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
