"""Who may read the dashboard and who may change things through it.

The rules, in order: a listener off loopback needs a token (or the dashboard is refused at start);
with a token, every page and API call needs it, as a bearer header or as the session cookie that
the login form sets; without one (loopback only), anyone on this host is an operator, but the Host
header must name loopback, which defeats DNS rebinding. Every mutating call is a POST with a JSON
body, and a browser's POST must also carry the page's CSRF token and come from our own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from buraq.errors import BuraqError

COOKIE = "buraq_session"
CSRF_HEADER = "HTTP_X_BURAQ_CSRF"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Policy:
    """The access rules for one listener; ``token`` is None only on loopback."""

    host: str
    token: str | None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def for_listener(cls, host: str, token: str | None) -> "Policy":
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise BuraqError(f"the dashboard token must be at least {MIN_TOKEN_LENGTH} characters")
        if token is None and not is_loopback(host):
            raise BuraqError(f"refusing to serve the dashboard on {host}, which is not loopback, without a token: "
                             "set BURAQ_DASHBOARD_TOKEN (or --dashboard-token-file), listen on 127.0.0.1, "
                             "or pass --dashboard off to serve /metrics only")
        return cls(host=host, token=token)

    def session_value(self) -> str:
        """The cookie a successful login sets; it proves the token without containing it."""
        assert self.token is not None
        return hmac.new(self.secret, b"session:" + self.token.encode(), hashlib.sha256).hexdigest()

    def check_token(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def csrf_token(self, environ: Mapping[str, object]) -> str:
        """Tied to the session (or to this server's run, on loopback without a token)."""
        basis = _cookie(environ) or "loopback"
        return hmac.new(self.secret, b"csrf:" + basis.encode(), hashlib.sha256).hexdigest()

    def host_allowed(self, environ: Mapping[str, object]) -> bool:
        """Without a token, only loopback names may reach us (a rebinding attacker's DNS name may not)."""
        if self.token is not None:
            return True
        host = str(environ.get("HTTP_HOST", "")).lower()
        name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.rsplit(":", 1)[0]
        return is_loopback(name)

    def authenticated(self, environ: Mapping[str, object]) -> bool:
        if self.token is None:
            return True
        if self._bearer(environ):
            return True
        cookie = _cookie(environ)
        return cookie is not None and hmac.compare_digest(cookie, self.session_value())

    def may_change(self, environ: Mapping[str, object]) -> tuple[bool, str]:
        """Whether a POST may change state; the reason when it may not."""
        if not self.authenticated(environ):
            return False, "authentication required"
        if self._bearer(environ):
            return True, ""  # a script with the token in a header: no ambient credential a site could ride on
        if not _same_origin(environ):
            return False, "cross-site request refused"
        offered = str(environ.get(CSRF_HEADER, ""))
        if not hmac.compare_digest(offered.encode(), self.csrf_token(environ).encode()):
            return False, "missing or wrong X-Buraq-CSRF header"
        return True, ""

    def _bearer(self, environ: Mapping[str, object]) -> bool:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and self.check_token(value.strip())


def _cookie(environ: Mapping[str, object]) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(str(environ.get("HTTP_COOKIE", "")))
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


def _same_origin(environ: Mapping[str, object]) -> bool:
    """Browsers say where a request comes from; anything but our own origin is refused.

    Sec-Fetch-Site, where the browser sends it, decides; otherwise Origin must name our Host. The
    scheme is not compared: behind a TLS-terminating proxy the page is https:// and we see http.
    """
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None:
        return site in ("same-origin", "none")
    origin = environ.get("HTTP_ORIGIN")
    return origin is None or str(origin).partition("://")[2] == str(environ.get("HTTP_HOST", ""))
