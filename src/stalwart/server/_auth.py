"""Who may use the HTTP API: the API token, on every path but the public ones.

The token (``server.api_token``) is a literal or a ``secret://name`` reference;
a reference is resolved at each request through a
:class:`~stalwart.guard.SecretResolver` (its short cache, and the local vault's
change check), so ``stalwart secrets rotate`` takes effect at once, without a
restart. Tokens are compared with :func:`hmac.compare_digest`. The value never
appears in a log line, an error or a response: the resolver registers it with
the redactor, and the dashboard's cookie holds an HMAC of it, not the token.

:class:`AuthGate` (ASGI middleware) decides before any handler runs:

- a public path (``/livez``, ``/readyz``, ``/metrics`` by default): allowed;
- no token configured: reads allowed (the settings allow this only on a loopback
  host), anything else 403;
- ``Authorization: Bearer <token>``: allowed when it matches, else 401;
- the session cookie ``POST /login`` sets: accepted for GET and HEAD only, so a
  page elsewhere cannot make the browser change anything (CSRF);
- otherwise 401 with ``WWW-Authenticate: Bearer`` (``/`` answers with a login form);
- a reference that cannot be resolved: 503 naming the secret, never a 500.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import html
import urllib.parse
from importlib import resources

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from stalwart.errors import ConfigError, StalwartError
from stalwart.guard import (
    SecretResolver,
    default_redactor,
    is_secret_ref,
    provider_from_env,
    secret_name,
)
from stalwart.observe import get_logger
from stalwart.server._http import send_json

__all__ = ["COOKIE", "CREDENTIAL", "ApiToken", "AuthGate", "TokenUnavailable"]

COOKIE = "stalwart_session"
CREDENTIAL = "stalwart.credential"
"""The scope key where the gate leaves what a request was let in with: ``("bearer", token)``
or ``("session", cookie)`` (a long request -- the event stream -- checks it again)."""
SAFE_METHODS = frozenset({"GET", "HEAD"})
_SESSION_CONTEXT = b"stalwart dashboard session v1"
_LOCAL_PROVIDERS = ("vault", "env")  # cheap to read: no thread hop per request
_BEARER = {"WWW-Authenticate": "Bearer"}
_log = get_logger("stalwart.server")


class TokenUnavailable(Exception):
    """The token's secret reference cannot be resolved now (the API answers 503)."""


class ApiToken:
    """The configured API token: ``None``, a literal, or a ``secret://`` reference.

    ``resolver`` resolves references (default: one over the provider the
    ``STALWART_SECRETS`` variables name, made at first use).
    """

    def __init__(self, setting: str | None, resolver: SecretResolver | None = None) -> None:
        self.setting = setting
        self.reference = setting if setting is not None and is_secret_ref(setting) else None
        self.secret = secret_name(self.reference) if self.reference else None
        if setting is not None and self.reference is None:
            default_redactor().add_known(setting)  # a literal is a secret too: never logged
        self._resolver = resolver
        self._failing = False

    @property
    def configured(self) -> bool:
        return self.setting is not None

    @property
    def resolver(self) -> SecretResolver | None:
        """The resolver in use (None until a reference was first resolved)."""
        return self._resolver

    def _resolve(self) -> str:
        """The token now (blocking: a provider may be remote)."""
        assert self.setting is not None and self.reference is not None
        try:
            if self._resolver is None:
                self._resolver = SecretResolver(provider_from_env())
            value = self._resolver.resolve(self.reference)
        except StalwartError as exc:  # ours never carry a secret's value
            raise TokenUnavailable(self._unavailable(f"{type(exc).__name__}: {exc}")) from None
        except Exception as exc:  # a provider's own error: its type only
            raise TokenUnavailable(self._unavailable(type(exc).__name__)) from None
        if len(value) < 16:
            raise TokenUnavailable(
                f"the API token secret {self.reference!r} is shorter than 16 characters: "
                f"rotate it to a longer value (stalwart secrets rotate {self.secret})"
            )
        if self._failing:
            self._failing = False
            _log.info("api_token_resolved", secret=self.reference)
        return value

    def _unavailable(self, why: str) -> str:
        message = default_redactor().redact(
            f"the API token secret {self.reference!r} cannot be resolved ({why}); add or fix "
            f"it (stalwart secrets set {self.secret}) or the secrets "
            "provider (STALWART_SECRETS), then retry"
        )
        if not self._failing:  # once per outage, not once per request
            self._failing = True
            _log.error("api_token_unavailable", secret=self.reference, error=message)
        return message

    async def current(self) -> str:
        """The token in force; :class:`TokenUnavailable` if its reference cannot be resolved."""
        if self.setting is None:
            raise TokenUnavailable("no API token is configured")
        if self.reference is None:
            return self.setting
        provider = getattr(self._resolver, "provider", None)
        if self._resolver is not None and getattr(provider, "kind", "") in _LOCAL_PROVIDERS:
            return self._resolve()
        return await asyncio.to_thread(self._resolve)

    def check_now(self) -> None:
        """Resolve the token once (at startup): :class:`ConfigError` naming the secret if
        it cannot be."""
        if self.reference is None:
            return
        try:
            self._resolve()
        except TokenUnavailable as exc:
            raise ConfigError(f"server.api_token: {exc}") from None

    async def matches(self, given: str) -> bool:
        """``given`` is the token (constant-time comparison)."""
        return hmac.compare_digest(given.encode(), (await self.current()).encode())

    async def session(self) -> str:
        """The dashboard's cookie value: an HMAC of the token, so the cookie is not the
        token, and it stops working when the token changes."""
        token = (await self.current()).encode()
        return hmac.new(token, _SESSION_CONTEXT, hashlib.sha256).hexdigest()

    async def session_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), (await self.session()).encode())

    async def still_valid(self, credential: tuple[str, str] | None) -> bool:
        """Whether what a request was let in with (see :data:`CREDENTIAL`) is still good:
        False once the token changed or cannot be resolved. None: no token, always True."""
        if credential is None:
            return True
        kind, value = credential
        try:
            if kind == "bearer":
                return await self.matches(value)
            return await self.session_matches(value)
        except TokenUnavailable:
            return False


@functools.cache
def _login_template() -> str:
    return resources.files("stalwart.server").joinpath("static", "login.html").read_text()


def login_page(message: str | None = None) -> bytes:
    """The login form, with ``message`` (escaped) above its hint."""
    page = _login_template()
    note = f'<p class="message" id="message">{html.escape(message)}</p>' if message else ""
    return page.replace("<!--MESSAGE-->", note, 1).encode()


async def _send_page(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AuthGate:
    """ASGI middleware enforcing the API token (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: ApiToken, public_paths: tuple[str, ...]) -> None:
        self.app, self.token, self.public = app, token, frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        login = path == "/login" and method == "POST"
        if path in self.public and not login:
            await self.app(scope, receive, send)
            return
        try:
            if login:
                await self._login(scope, receive, send)
                return
            denied = await self._check(scope)
        except TokenUnavailable as exc:
            await send_json(send, 503, str(exc), {"Retry-After": "5"})
            return
        if denied is None:
            await self.app(scope, receive, send)
        elif path == "/" and method in SAFE_METHODS and denied[0] == 401:
            await _send_page(send, 401, login_page(denied[2]), _BEARER)
        else:
            await send_json(send, denied[0], denied[1], _BEARER if denied[0] == 401 else None)

    async def _check(self, scope: Scope) -> tuple[int, str, str | None] | None:
        """None when allowed, else (status, error, message for the login page)."""
        method = scope["method"]
        if not self.token.configured:
            if method in SAFE_METHODS:
                return None  # development on loopback: the settings refuse it elsewhere
            return (
                403,
                "mutating endpoints are disabled: no API token is configured; set "
                "server.api_token (STALWART_API_TOKEN) to enable them",
                None,
            )
        headers = Headers(scope=scope)
        header = headers.get("authorization")
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                return 401, "the Authorization header must be 'Bearer <api token>'", None
            if await self.token.matches(given.strip()):
                scope[CREDENTIAL] = ("bearer", given.strip())
                return None
            return 401, "wrong bearer token", "wrong token"
        cookie = _cookie(headers)
        if cookie is not None and method in SAFE_METHODS:
            if await self.token.session_matches(cookie):
                scope[CREDENTIAL] = ("session", cookie)
                return None
            return (
                401,
                "the login session is no longer valid (the API token changed?): log in again "
                "at / or send Authorization: Bearer <api token>",
                "your session ended (the API token changed?): log in again",
            )
        if cookie is not None:
            return (
                401,
                f"{method} requests need the Authorization: Bearer <api token> header; the "
                "login cookie is accepted for GET requests only (CSRF protection)",
                None,
            )
        return (
            401,
            "missing bearer token: send Authorization: Bearer <api token> (server.api_token)",
            None,
        )

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /login`` with the form field ``token``: 303 to ``/`` with the session
        cookie when it is right, the form again (401) when not."""
        if not self.token.configured:
            await send_json(
                send, 403, "no API token is configured: there is nothing to log in with"
            )
            return
        request = Request(scope, receive)
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            await send_json(
                send,
                400,
                "POST /login takes a form (application/x-www-form-urlencoded) with the field "
                "'token'",
            )
            return
        fields = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        given = fields.get("token", [""])[0].strip()
        if not given:
            await send_json(send, 400, "the form field 'token' is required (the API token)")
            return
        if not await self.token.matches(given):
            peer = scope.get("client")
            _log.warning("api_login_failed", client=str(peer[0]) if peer else "unknown")
            await _send_page(send, 401, login_page("wrong token"), _BEARER)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={await self.token.session()}; HttpOnly; SameSite=Strict; Path=/"
        headers = [
            (b"location", b"/"),
            (b"set-cookie", (cookie + secure).encode()),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _cookie(headers: Headers) -> str | None:
    for raw in headers.getlist("cookie"):
        for part in raw.split(";"):
            key, _, value = part.strip().partition("=")
            if key == COOKIE and value:
                return value
    return None
