"""`tessera.control.auth` on its own: token hashing, sessions and their expiry, the log-in limiter's
sliding window, argon2 verification, and every branch of the state-changing request checks
(Origin/Referer, CSRF, the local-mode header, roles, Host), with a controllable clock."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from port_double import OPERATE_TOKEN, OPERATOR, READ_TOKEN, auth_config, password_hash_for
from starlette.requests import HTTPConnection

from tessera.config.models import ControlConfig, ControlUser
from tessera.control.app import safe_next
from tessera.control.auth import (
    Authenticator,
    AuthError,
    LoginLimiter,
    PasswordVerifier,
    SessionStore,
    hash_password,
    new_token,
    request_origin,
    token_sha256,
)
from tessera.control.port import Actor

pytestmark = pytest.mark.timeout(60)
OWN = "http://127.0.0.1:8780"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conn(
    method: str = "POST",
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1:8780",
    scheme: str = "http",
) -> HTTPConnection:
    raw = [(b"host", host.encode())] + [
        (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "scheme": scheme,
        "path": "/api/v1/risk/halt",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8780),
    }
    return HTTPConnection(scope)


def test_a_token_is_stored_as_the_hex_sha256_of_its_text() -> None:
    assert token_sha256("abc") == hashlib.sha256(b"abc").hexdigest()
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 43 for t in tokens)


def test_only_the_exact_token_authenticates_and_it_carries_its_name_and_role() -> None:
    auth = Authenticator(auth_config(users=[]))
    actor = auth.token_actor(OPERATE_TOKEN, "10.0.0.1")
    assert actor == Actor("ops-bot", "operate", "token", "10.0.0.1")
    reader = auth.token_actor(READ_TOKEN, "")
    assert reader is not None and reader.role == "read"
    for wrong in (OPERATE_TOKEN[:-1], OPERATE_TOKEN + "A", token_sha256(OPERATE_TOKEN), ""):
        assert auth.token_actor(wrong, "") is None


def test_a_session_lives_for_its_ttl_and_dies_on_delete() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=60.0, clock=clock)
    one, two = store.create("olga", "operate"), store.create("olga", "operate")
    assert one.id != two.id and one.csrf != two.csrf and one.id != one.csrf
    assert len(one.id) == 43 and len(one.csrf) == 43
    clock.now += 59.9
    assert store.get(one.id) is one
    clock.now += 0.2
    assert store.get(one.id) is None
    assert len(store) == 0
    three = store.create("rudi", "read")
    store.delete(three.id)
    assert store.get(three.id) is None
    assert store.get("") is None and store.get(None) is None


def test_the_limiter_counts_failures_per_key_over_a_sliding_minute() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_window=3, window_s=60.0, clock=clock)
    for _ in range(2):
        limiter.failure("addr:a", "user:u")
        clock.now += 10
    assert limiter.retry_after("addr:a", "user:u") is None
    limiter.failure("addr:a", "user:u")  # the third, at t=20
    assert limiter.retry_after("addr:a") == 40  # the first failure (t=0) leaves at t=60
    assert limiter.retry_after("user:u") == 40
    assert limiter.retry_after("addr:b", "user:v") is None
    clock.now += 40.5  # t=60.5: the first has left the window
    assert limiter.retry_after("addr:a") is None
    limiter.failure("addr:a")
    assert limiter.retry_after("addr:a") == 10  # the second (t=10) leaves at t=70


async def test_argon2_verification_accepts_only_the_right_password_of_a_known_user() -> None:
    user = ControlUser(name="olga", role="operate", password_hash=password_hash_for(OPERATOR[1]))
    broken = ControlUser(name="bad", role="read", password_hash="$argon2id$not-a-hash")
    verifier = PasswordVerifier([user, broken])
    assert await verifier.verify("olga", OPERATOR[1]) == user
    assert await verifier.verify("olga", OPERATOR[1] + " ") is None
    assert await verifier.verify("mallory", OPERATOR[1]) is None
    assert await verifier.verify("bad", "anything") is None


def test_hash_password_makes_an_argon2id_hash_the_config_accepts() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$")
    ControlUser(name="x", role="read", password_hash=hashed)


async def test_login_answers_the_same_for_an_unknown_user_and_a_wrong_password() -> None:
    auth = Authenticator(auth_config(login_attempts_per_minute=10))
    answers = []
    for name in (OPERATOR[0], "mallory"):
        with pytest.raises(AuthError) as info:
            await auth.login(name, "wrong password", "127.0.0.1")
        answers.append((info.value.status, info.value.message, info.value.headers))
    assert answers[0] == answers[1] == (401, "wrong user name or password", {})
    session = await auth.login(*OPERATOR, "127.0.0.1")
    assert auth.sessions.get(session.id) is session


async def test_login_is_limited_before_the_password_is_checked() -> None:
    clock = Clock()
    auth = Authenticator(auth_config(login_attempts_per_minute=2), clock=clock)
    for _ in range(2):
        with pytest.raises(AuthError):
            await auth.login(OPERATOR[0], "guess", "10.0.0.9")
    with pytest.raises(AuthError) as info:
        await auth.login(*OPERATOR, "10.0.0.9")
    assert info.value.status == 429
    assert info.value.headers == {"Retry-After": "60"}
    clock.now += 61
    session = await asyncio.wait_for(auth.login(*OPERATOR, "10.0.0.9"), 10)
    assert session.name == OPERATOR[0]


def _session_actor(auth: Authenticator) -> tuple[Actor, str, str]:
    session = auth.sessions.create("olga", "operate")
    return Actor("olga", "operate", "session", "127.0.0.1"), session.id, session.csrf


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": OWN}, True),
        ({"Origin": OWN + "/"}, True),
        ({"Origin": OWN.upper()}, True),
        ({"Referer": OWN + "/risk?x=1"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://127.0.0.1:8781"}, False),
        ({"Origin": "https://127.0.0.1:8780"}, False),
        ({"Referer": "http://evil.example/"}, False),
        ({"Referer": "not a url"}, False),
        ({"Origin": "http://evil.example", "Referer": OWN + "/"}, False),  # Origin wins
        ({"Origin": "https://bot.example.com"}, True),  # in allowed_origins
        ({}, False),  # a cookie request must say where it comes from
    ],
)
def test_a_session_post_passes_only_from_its_own_or_an_allowed_origin(
    headers: dict[str, str], allowed: bool
) -> None:
    auth = Authenticator(auth_config(users=[], allowed_origins=["https://bot.example.com/"]))
    actor, sid, csrf = _session_actor(auth)
    request = conn(headers={**headers, "Cookie": f"tessera_session={sid}", "X-CSRF-Token": csrf})
    if allowed:
        auth.check_state_change(request, actor)
    else:
        with pytest.raises(AuthError) as info:
            auth.check_state_change(request, actor)
        assert info.value.status == 403


def test_a_session_post_needs_the_csrf_token_of_its_own_session() -> None:
    auth = Authenticator(auth_config(users=[]))
    actor, sid, csrf = _session_actor(auth)
    _, _, other_csrf = _session_actor(auth)
    base = {"Origin": OWN, "Cookie": f"tessera_session={sid}"}
    auth.check_state_change(conn(headers={**base, "X-CSRF-Token": csrf}), actor)
    auth.check_state_change(conn(headers=base), actor, csrf_form=csrf)  # form field
    for token in ("", other_csrf, csrf[:-1], csrf + "x", "é" * 10):
        with pytest.raises(AuthError) as info:
            auth.check_state_change(conn(headers={**base, "X-CSRF-Token": token}), actor)
        assert info.value.status == 403


def test_a_bearer_token_request_may_omit_origin_but_not_send_a_foreign_one() -> None:
    auth = Authenticator(auth_config(users=[]))
    actor = Actor("ops-bot", "operate", "token", "127.0.0.1")
    auth.check_state_change(conn(), actor)
    with pytest.raises(AuthError):
        auth.check_state_change(conn(headers={"Origin": "http://evil.example"}), actor)


def test_local_mode_needs_the_custom_header_and_a_same_origin() -> None:
    auth = Authenticator(ControlConfig(enabled=True))
    assert auth.local
    actor = auth.actor_for(conn())
    assert actor == Actor("local", "operate", "local", "127.0.0.1")
    auth.check_state_change(conn(headers={"X-Tessera-Request": "1"}), actor)
    auth.check_state_change(conn(headers={"X-Tessera-Request": "1", "Origin": OWN}), actor)
    for headers in (
        {},
        {"X-Tessera-Request": "0"},
        {"Origin": OWN},
        {"X-Tessera-Request": "1", "Origin": "http://evil.example"},
    ):
        with pytest.raises(AuthError) as info:
            auth.check_state_change(conn(headers=headers), actor)
        assert info.value.status == 403


def test_the_read_role_may_not_operate() -> None:
    Authenticator.require_operate(Actor("a", "operate", "token"))
    with pytest.raises(AuthError) as info:
        Authenticator.require_operate(Actor("grafana", "read", "token"))
    assert info.value.status == 403
    assert "operate role" in info.value.message


def test_authentication_failures_say_how_to_authenticate_and_never_echo_the_token() -> None:
    auth = Authenticator(auth_config(users=[]))
    with pytest.raises(AuthError) as none:
        auth.authenticate(conn("GET"))
    assert none.value.status == 401
    assert none.value.headers == {"WWW-Authenticate": 'Bearer realm="tessera"'}
    with pytest.raises(AuthError) as wrong:
        auth.authenticate(conn("GET", {"Authorization": "Bearer secret-guess-123"}))
    assert "invalid_token" in wrong.value.headers["WWW-Authenticate"]
    assert "secret-guess-123" not in wrong.value.message
    ok = auth.authenticate(conn("GET", {"Authorization": f"bearer {READ_TOKEN}"}))
    assert ok.name == "grafana"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8780", True),
        ("localhost:8780", True),
        ("[::1]:8780", True),
        ("localhost", True),
        ("bot.example.com", True),  # the host of an allowed origin (a proxy passing Host)
        ("evil.example:8780", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_a_loopback_bind_answers_only_to_loopback_names_and_allowed_hosts(
    host: str, allowed: bool
) -> None:
    auth = Authenticator(ControlConfig(enabled=True, allowed_origins=["https://bot.example.com"]))
    if allowed:
        auth.check_host(conn("GET", host=host))
    else:
        with pytest.raises(AuthError):
            auth.check_host(conn("GET", host=host))


def test_a_public_bind_does_not_check_the_host() -> None:
    auth = Authenticator(auth_config(host="0.0.0.0", users=[]))
    auth.check_host(conn("GET", host="anything.example"))


def test_the_request_origin_comes_from_origin_then_referer() -> None:
    assert request_origin(conn(headers={"Origin": "HTTP://A.example"})) == "http://a.example"
    assert request_origin(conn(headers={"Referer": "https://b.example:8443/x?y"})) == (
        "https://b.example:8443"
    )
    assert request_origin(conn()) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("/orders?status=NEW", "/orders?status=NEW"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_after_login_only_a_path_of_this_site_is_followed(target: str, expected: str) -> None:
    assert safe_next(target) == expected
