"""HTTP routing for the one listener `buraq serve` opens: /metrics, /healthz, the dashboard and /api.

A small WSGI app rather than a framework: a dozen routes, no templates, and prometheus_client
already speaks WSGI for /metrics.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote

from prometheus_client import CollectorRegistry, make_wsgi_app

from buraq.web import api
from buraq.web.auth import COOKIE, Policy

log = logging.getLogger("buraq.web")
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
MAX_BODY = 64 * 1024
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]
PIPELINE_ROUTE = re.compile(r"^/api/pipelines/(?P<name>[^/]+)/(?P<rest>series|charts|dlq(?:/replay|/purge|/[^/]+)?)$")


class Response(Exception):
    """Raised anywhere in a request to answer with this status and JSON body."""

    def __init__(self, status: str, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


class DashboardApp:
    """The WSGI callable. ``context`` None means `--dashboard off`: /metrics and /healthz only."""

    def __init__(self, registry: CollectorRegistry, policy: Policy | None, context: api.Context | None) -> None:
        self._metrics = make_wsgi_app(registry)
        self._policy = policy
        self._context = context

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return self._metrics(environ, start_response)
        try:
            if path == "/healthz":
                raise Response("200 OK", {"status": "ok"})
            if self._context is None or self._policy is None:
                raise Response("404 Not Found", {"error": "the dashboard is off (--dashboard off)"})
            return self._dashboard(environ, start_response, path, self._policy, self._context)
        except Response as answer:
            return _json(start_response, answer.status, answer.body, answer.headers)
        except Exception:
            log.exception("dashboard request %s %s failed", environ.get("REQUEST_METHOD"), path)
            return _json(start_response, "500 Internal Server Error", {"error": "internal error; see the serve log"})

    def _dashboard(self, environ: Environ, start_response: StartResponse, path: str, policy: Policy,
                   context: api.Context) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if not policy.host_allowed(environ):
            raise Response("403 Forbidden", {"error": "this listener answers to loopback host names only"})
        if path.startswith("/static/"):
            return _static(start_response, path.removeprefix("/static/"))
        if path == "/login":
            return self._login(environ, start_response, method, policy)
        if path == "/logout" and method == "POST":
            cookie = f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            return _redirect(start_response, "/login", [("Set-Cookie", cookie)])
        if not policy.authenticated(environ):
            if path.startswith("/api/"):
                raise Response("401 Unauthorized", {"error": "authentication required: log in or send "
                                                             "Authorization: Bearer TOKEN"})
            return _redirect(start_response, "/login")
        if path == "/":
            return _static(start_response, "index.html")
        if method == "POST":
            allowed, why = policy.may_change(environ)
            if not allowed:
                raise Response("403 Forbidden", {"error": why})
            if not str(environ.get("CONTENT_TYPE", "")).startswith("application/json"):
                raise Response("415 Unsupported Media Type", {"error": "send Content-Type: application/json"})
        elif method != "GET":
            raise Response("405 Method Not Allowed", {"error": f"{method} is not allowed here"})
        return _json(start_response, "200 OK", _api(environ, path, method, policy, context))

    def _login(self, environ: Environ, start_response: StartResponse, method: str,
               policy: Policy) -> Iterable[bytes]:
        if policy.token is None:
            return _redirect(start_response, "/")
        if method == "POST":
            form = parse_qs(_body(environ).decode("utf-8", "replace"))
            if policy.check_token(form.get("token", [""])[0]):
                cookie = f"{COOKIE}={policy.session_value()}; Path=/; HttpOnly; SameSite=Strict"
                return _redirect(start_response, "/", [("Set-Cookie", cookie)])
            log.warning("dashboard login with a wrong token from %s", environ.get("REMOTE_ADDR"))
            return _static(start_response, "login.html", "401 Unauthorized")
        return _static(start_response, "login.html")


def _api(environ: Environ, path: str, method: str, policy: Policy, context: api.Context) -> Any:
    query = parse_qs(environ.get("QUERY_STRING", ""))

    def number(name: str, default: int) -> int:
        try:
            return int(query.get(name, [default])[0])
        except ValueError:
            raise api.BadRequest(f"{name} must be a whole number") from None

    try:
        if path == "/api/session" and method == "GET":
            return {"csrf": policy.csrf_token(environ), "token_required": policy.token is not None}
        if path == "/api/overview" and method == "GET":
            return api.overview(context)
        if path == "/api/bench" and method == "GET":
            return api.bench(context)
        route = PIPELINE_ROUTE.match(path)
        if route is None:
            raise api.NotFound(f"no such API: {method} {path}")
        name, rest = unquote(route["name"]), route["rest"]
        if method == "POST" and rest in ("dlq/replay", "dlq/purge"):
            body = _body(environ)
            return api.replay(context, name, body) if rest == "dlq/replay" else api.purge(context, name, body)
        if method != "GET":
            raise api.NotFound(f"no such API: {method} {path}")
        if rest == "series":
            return api.series(context, name, number("seconds", 300))
        if rest == "charts":
            return api.chart_svgs(context, name, number("seconds", 300))
        if rest == "dlq":
            return api.dead_letters(context, name, number("count", 20))
        return api.dead_letter(context, name, unquote(rest.removeprefix("dlq/")))
    except api.NotFound as missing:
        raise Response("404 Not Found", {"error": str(missing)}) from None
    except api.BadRequest as bad:
        raise Response("400 Bad Request", {"error": str(bad)}) from None


def _body(environ: Environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise Response("413 Payload Too Large", {"error": f"bodies are limited to {MAX_BODY} bytes"})
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _json(start_response: StartResponse, status: str, body: Any,
          headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store"), *SECURITY_HEADERS, *(headers or [])])
    return [data]


def _redirect(start_response: StartResponse, location: str,
              headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response("303 See Other", [("Location", location), ("Content-Length", "0"), *SECURITY_HEADERS,
                                     *(headers or [])])
    return [b""]


def _static(start_response: StartResponse, name: str, status: str = "200 OK") -> list[bytes]:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise Response("404 Not Found", {"error": f"no such file: {name}"})
    try:
        data = resources.files("buraq.web").joinpath("static", name).read_bytes()
    except FileNotFoundError:
        raise Response("404 Not Found", {"error": f"no such file: {name}"}) from None
    start_response(status, [("Content-Type", STATIC_TYPES[suffix]), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-cache"), *SECURITY_HEADERS])
    return [data]
