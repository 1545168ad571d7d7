"""Who may use the control API and console, and how they prove it.

- **Tokens** (``Authorization: Bearer <token>``): the config keeps only the SHA-256 of each
  token; a presented token is hashed and compared with every configured hash in constant time
  (`hmac.compare_digest`), so neither the token nor its position leaks through timing.
- **Users** (console log-in): argon2 hashes; verifying costs tens of milliseconds on purpose, so
  it runs in a thread, and an unknown user name is checked against a dummy hash so the answer
  takes as long as for a real one (timing does not reveal which names exist).
- **Sessions**: in memory, ids from `secrets.token_urlsafe(32)`, one CSRF token each, expiring
  after ``session_ttl_s``; logging out deletes the session. A restart logs everyone out.
- **Log-in limits**: failed attempts are counted per client address and per user name over a
  sliding minute; at ``login_attempts_per_minute`` failures further attempts get 429 with
  ``Retry-After`` *before* the password is checked (a brute force costs us nothing).
- **State-changing requests** (POST/PUT/PATCH/DELETE): their ``Origin`` (or ``Referer``) must be
  the server's own origin or in ``allowed_origins``; a cookie-authenticated one must carry the
  session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf_token``) and may not omit
  both Origin and Referer; a bearer-token one (a script, not a browser) may omit them.
- **Local mode** (no tokens and no users; the config only allows it on loopback): everyone on
  this machine is the actor ``local`` with the operate role. A web page open in the user's
  browser must still not be able to act through a cross-origin request, so state-changing
  requests need the header ``X-Tessera-Request: 1`` (a cross-origin form cannot set a header,
  and without CORS a script cannot either), and on a loopback bind the ``Host`` must be a
  loopback name (DNS rebinding).

Nothing here logs or returns a token, password, session id or CSRF token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import HTTPConnection

from tessera.config.models import ControlConfig, ControlUser
from tessera.control.port import Actor, Role
from tessera.logging import get_logger

log = get_logger(__name__)

SESSION_COOKIE = "tessera_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOCAL_HEADER = "X-Tessera-Request"
LOCAL_ACTOR = "local"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_LIMITER_KEYS = 10_000

_HASHER = PasswordHasher()


def new_token() -> str:
    """A new API token: 32 random bytes, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """What the config stores for a token: the hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (argon2-cffi's default, RFC 9106 low-memory profile)."""
    return _HASHER.hash(password)


class AuthError(Exception):
    """A refused request: ``status`` (401, 403, 429), one sentence saying what to do, and the
    headers to answer with (``WWW-Authenticate``, ``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(slots=True)
class Session:
    """A console log-in. ``id`` is the cookie's value; ``csrf`` goes into every page's forms."""

    id: str
    csrf: str
    name: str
    role: Role
    expires: float  # on the store's clock (monotonic seconds)


class SessionStore:
    """Console sessions in memory (a restart logs everyone out, which is the safe direction)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, name: str, role: Role) -> Session:
        self._expire()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            name=name,
            role=role,
            expires=self._clock() + self.ttl_s,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def _expire(self) -> None:
        now = self._clock()
        for sid in [s.id for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[sid]


class LoginLimiter:
    """Failed log-ins per key (``addr:<ip>``, ``user:<name>``) over a sliding window."""

    def __init__(
        self,
        per_window: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until any of ``keys`` may try again, or None when all may try now."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._prune(key, now)
            if times is not None and len(times) >= self.per_window:
                wait = max(wait, times[0] + self.window_s - now)
        return max(1, int(wait + 0.999)) if wait > 0 else None

    def failure(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            if key not in self._failures and len(self._failures) >= _MAX_LIMITER_KEYS:
                self._evict(now)
            self._failures.setdefault(key, deque()).append(now)

    def _prune(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _evict(self, now: float) -> None:
        for key in list(self._failures):
            self._prune(key, now)
        while len(self._failures) >= _MAX_LIMITER_KEYS:  # still full: forget the stalest
            stalest = min(self._failures, key=lambda k: self._failures[k][-1])
            del self._failures[stalest]


class PasswordVerifier:
    """argon2 verification in a thread, with a dummy hash for unknown names."""

    def __init__(self, users: list[ControlUser]) -> None:
        self._users = {u.name: u for u in users}
        self._dummy = _HASHER.hash(secrets.token_urlsafe(16)) if users else ""

    async def verify(self, name: str, password: str) -> ControlUser | None:
        return await asyncio.to_thread(self._verify, name, password)

    def _verify(self, name: str, password: str) -> ControlUser | None:
        user = self._users.get(name)
        stored = user.password_hash if user is not None else self._dummy
        if not stored:
            return None
        ok: bool
        try:
            ok = _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
        return user if ok and user is not None else None


@dataclass
class Authenticator:
    """Every auth decision of one app, from its `ControlConfig`."""

    config: ControlConfig
    clock: Callable[[], float] = time.monotonic
    sessions: SessionStore = field(init=False)
    limiter: LoginLimiter = field(init=False)
    passwords: PasswordVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionStore(self.config.session_ttl_s, self.clock)
        self.limiter = LoginLimiter(self.config.login_attempts_per_minute, clock=self.clock)
        self.passwords = PasswordVerifier(self.config.users)
        self._tokens = [(t.sha256.encode("ascii"), t.name, t.role) for t in self.config.tokens]
        self._user_roles: dict[str, Role] = {u.name: u.role for u in self.config.users}
        self._allowed = {_norm_origin(o) for o in self.config.allowed_origins}
        self._loopback_bind = self.config.host in LOOPBACK_HOSTS
        self._allowed_hosts = set(LOOPBACK_HOSTS) | {
            (urlsplit(o).hostname or "").lower() for o in self.config.allowed_origins
        }

    @property
    def local(self) -> bool:
        """No tokens and no users: everyone on this machine operates (loopback only)."""
        return not self.config.has_auth

    @property
    def has_users(self) -> bool:
        return bool(self.config.users)

    # --- who is asking ------------------------------------------------------------------------

    def check_host(self, conn: HTTPConnection) -> None:
        """On a loopback bind, answer only to loopback host names and the hosts of
        ``allowed_origins``: a page on evil.example whose name is re-pointed at 127.0.0.1 (DNS
        rebinding) is then refused, since its requests carry ``Host: evil.example``."""
        if not self._loopback_bind:
            return
        host = _host_name(conn.headers.get("host", ""))
        if host not in self._allowed_hosts:
            raise AuthError(
                403,
                "this server answers only to its loopback address; to reach it through a proxy "
                "under another name, add that origin (https://name) to control.allowed_origins",
            )

    def token_actor(self, token: str, address: str) -> Actor | None:
        presented = token_sha256(token).encode("ascii")
        found: Actor | None = None
        for digest, name, role in self._tokens:  # compare with every one: constant time
            if hmac.compare_digest(presented, digest):
                found = Actor(name, role, "token", address)
        return found

    def session_of(self, conn: HTTPConnection) -> Session | None:
        return self.sessions.get(conn.cookies.get(SESSION_COOKIE))

    def actor_for(self, conn: HTTPConnection) -> Actor | None:
        """The actor of a request, or None when it proves nobody (never raises)."""
        address = client_address(conn)
        if self.local:
            return Actor(LOCAL_ACTOR, "operate", "local", address)
        scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return self.token_actor(credentials.strip(), address)
        session = self.session_of(conn)
        if session is not None:
            return Actor(session.name, session.role, "session", address)
        return None

    def authenticate(self, conn: HTTPConnection) -> Actor:
        """The request's actor, or `AuthError` 401 saying how to authenticate."""
        actor = self.actor_for(conn)
        if actor is not None:
            return actor
        scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
        if scheme and credentials.strip():
            if scheme.lower() != "bearer":
                message = "use the Bearer scheme: send Authorization: Bearer <token>"
            else:
                message = (
                    "the bearer token is not valid: check it, or make a new one with "
                    "`tessera control token new NAME --role read|operate`"
                )
            header = 'Bearer realm="tessera", error="invalid_token"'
        else:
            message = (
                "authentication required: send Authorization: Bearer <token> "
                "(see `tessera control token new`), or log in to the console at /login"
            )
            header = 'Bearer realm="tessera"'
        raise AuthError(401, message, {"WWW-Authenticate": header})

    # --- state-changing requests --------------------------------------------------------------

    def own_origin(self, conn: HTTPConnection) -> str:
        """``scheme://host[:port]`` as the request sees this server."""
        return _norm_origin(f"{conn.url.scheme}://{conn.headers.get('host', '')}")

    def foreign_origin(self, conn: HTTPConnection) -> bool:
        """True when the request names an Origin (or Referer) that is neither this server's own
        nor in ``allowed_origins``; False when it names an allowed one or none."""
        origin = request_origin(conn)
        if origin is None:
            return False
        return origin != self.own_origin(conn) and origin not in self._allowed

    def check_state_change(
        self, conn: HTTPConnection, actor: Actor, csrf_form: str | None = None
    ) -> None:
        """Origin/Referer, then CSRF (session) or the local header (local mode); `AuthError`
        403 when refused. Call it for every POST/PUT/PATCH/DELETE."""
        if request_origin(conn) is not None:
            if self.foreign_origin(conn):
                raise AuthError(
                    403,
                    "cross-origin request refused: its Origin is neither this server's own nor "
                    "in control.allowed_origins (add the public URL there when behind a proxy)",
                )
        elif actor.via == "session":
            raise AuthError(
                403,
                "a state-changing browser request without Origin or Referer is refused: send it "
                "from the console page, or use a bearer token from a script",
            )
        if actor.via == "session":
            session = self.session_of(conn)
            presented = conn.headers.get(CSRF_HEADER) or csrf_form or ""
            if not presented:
                raise AuthError(
                    403,
                    f"missing CSRF token: send the header {CSRF_HEADER} (or the form field "
                    f"{CSRF_FIELD}) with the token of the console page",
                )
            if session is None or not hmac.compare_digest(
                presented.encode("utf-8", "replace"), session.csrf.encode("ascii")
            ):
                raise AuthError(
                    403, "the CSRF token does not match this session: reload the console page"
                )
        elif actor.via == "local" and conn.headers.get(LOCAL_HEADER) != "1":
            raise AuthError(
                403,
                f"send the header {LOCAL_HEADER}: 1 with state-changing requests (local mode, "
                "no tokens or users configured)",
            )

    @staticmethod
    def require_operate(actor: Actor) -> None:
        if not actor.can_operate:
            raise AuthError(
                403,
                f"{actor.name!r} has the read role: actions need a token or user with the "
                "operate role",
            )

    # --- log-in -------------------------------------------------------------------------------

    async def login(self, username: str, password: str, address: str) -> Session:
        """A new session, or `AuthError` 401 (the same answer for an unknown user and a wrong
        password) or 429 (too many failures from this address or for this name)."""
        keys = (f"addr:{address}", f"user:{username[:64]}")
        wait = self.limiter.retry_after(*keys)
        if wait is not None:
            log.warning("control login rate-limited", address=address, retry_after_s=wait)
            raise AuthError(
                429,
                f"too many failed log-ins: try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        user = await self.passwords.verify(username, password) if username and password else None
        if user is None:
            self.limiter.failure(*keys)
            known = username in self._user_roles
            log.warning(
                "control login failed", address=address, user=username if known else "(unknown)"
            )
            raise AuthError(401, "wrong user name or password")
        role = self._user_roles[user.name]
        log.info("control login", user=user.name, role=role, address=address)
        return self.sessions.create(user.name, role)

    def logout(self, conn: HTTPConnection) -> Session | None:
        session = self.session_of(conn)
        if session is not None:
            self.sessions.delete(session.id)
            log.info("control logout", user=session.name, address=client_address(conn))
        return session


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client is not None else ""


def request_origin(conn: HTTPConnection) -> str | None:
    """The request's Origin header, else the origin of its Referer, else None. An Origin of
    ``null`` (sandboxed frames, some redirects) stays ``null`` and matches nothing."""
    origin = conn.headers.get("origin")
    if origin is not None:
        return _norm_origin(origin)
    referer = conn.headers.get("referer")
    if referer:
        parts = urlsplit(referer.strip())
        if parts.scheme and parts.netloc:
            return _norm_origin(f"{parts.scheme}://{parts.netloc}")
        return "invalid"
    return None


def _norm_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8780
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host
