"""Hostile and broken requests through the gateway: a 4xx problem, never a 5xx, nothing written."""

from __future__ import annotations

import contextlib
import http.client
import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.system import RunningSystem
from tests.e2e.test_journey import PASSWORD, bearer, register_and_login

REGISTER = "/api/v1/auth/register"
MIB = 1024 * 1024


def user_rows(system: RunningSystem) -> int:
    with contextlib.closing(sqlite3.connect(system.data_dir / "users.db")) as db:
        (count,) = db.execute("SELECT count(*) FROM users").fetchone()
    return int(count)


@contextlib.contextmanager
def nothing_written(system: RunningSystem) -> Iterator[None]:
    before = user_rows(system)
    yield
    assert user_rows(system) == before, "a refused request wrote a user"


def assert_problem(response: httpx.Response, status: int | None = None) -> None:
    """A client error told as RFC 9457 problem+json."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code


def registration(**changes: Any) -> dict[str, Any]:
    """A registration that succeeds as is; each test spoils one part."""
    body: dict[str, Any] = {
        "email": f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "password": PASSWORD,
        "name": "Ada",
    }
    body.update(changes)
    return body


def post_json(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    # Encoded here, not by httpx: it would refuse lone surrogates before they are sent.
    return client.post(
        path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


@pytest.fixture
def client(embedded_system: RunningSystem) -> Iterator[httpx.Client]:
    with embedded_system.client() as client:
        yield client


@pytest.fixture(scope="module")
def access_token(embedded_system: RunningSystem) -> str:
    with embedded_system.client() as client:
        _, tokens = register_and_login(client, "Tester")
    return str(tokens["access_token"])


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="as-is"),
        pytest.param({"password": (PASSWORD * 6)[:128]}, id="longest-password"),
        pytest.param({"name": "N" * 100}, id="longest-name"),
        pytest.param({"name": "Zoë Núñez-李 \u00a0Ōtomo"}, id="non-ascii-name"),
    ],
)
def test_a_good_registration_writes_one_user(
    changes: dict[str, Any], client: httpx.Client, embedded_system: RunningSystem
) -> None:
    """The control: what the tests below spoil is accepted when intact."""
    before = user_rows(embedded_system)

    created = post_json(client, REGISTER, registration(**changes))

    assert created.status_code == 201, created.text
    assert user_rows(embedded_system) == before + 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"email": "ada@example.com", "password": ', id="truncated"),
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{'email': 'ada@example.com'}", id="single-quotes"),
        pytest.param(b'{"email": "ada@example.com",}', id="trailing-comma"),
        pytest.param(b'{"name": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b"[" * 50_000 + b"]" * 50_000, id="deeply-nested"),
        pytest.param(b'{"email": NaN, "password": Infinity, "name": -Infinity}', id="nan"),
    ],
)
def test_malformed_json_is_refused(
    body: bytes, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = client.post(REGISTER, content=body, headers={"content-type": "application/json"})

    assert_problem(response)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="array"),
        pytest.param(None, id="null"),
        pytest.param("ada@example.com", id="string"),
        pytest.param(42, id="number"),
        pytest.param(registration(email=42), id="email-number"),
        pytest.param(registration(email=["ada@example.com"]), id="email-array"),
        pytest.param(registration(password=1234567890123), id="password-number"),
        pytest.param(registration(password=True), id="password-bool"),
        pytest.param(registration(name=None), id="name-null"),
        pytest.param(registration(name={"first": "Ada"}), id="name-object"),
        pytest.param(registration(name=["Ada"]), id="name-array"),
    ],
)
def test_wrong_types_are_refused(
    body: Any, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, body)

    assert_problem(response, 422)


@pytest.mark.parametrize("missing", ["email", "password", "name"])
def test_a_missing_field_is_refused(
    missing: str, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    body = registration()
    del body[missing]

    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, body)

    assert_problem(response, 422)
    assert [error["loc"][-1] for error in response.json()["errors"]] == [missing]


def test_an_empty_object_is_refused(client: httpx.Client, embedded_system: RunningSystem) -> None:
    with nothing_written(embedded_system):
        assert_problem(post_json(client, REGISTER, {}), 422)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"role": "admin"}, id="role"),
        pytest.param({"is_admin": True}, id="is-admin"),
        pytest.param({"id": str(uuid.uuid4())}, id="id"),
        pytest.param({"password_hash": "$argon2id$v=19$m=65536,t=3,p=4$x$y"}, id="password-hash"),
    ],
)
def test_an_unknown_field_is_refused(
    extra: dict[str, Any], client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, registration(**extra))

    assert_problem(response, 422)


def _oversized_body() -> bytes:
    return json.dumps(registration(name="N" * (MIB + 1024))).encode()


def test_an_oversized_body_with_a_length_is_refused(
    client: httpx.Client, embedded_system: RunningSystem
) -> None:
    body = _oversized_body()

    with nothing_written(embedded_system):
        response = client.post(REGISTER, content=body, headers={"content-type": "application/json"})

    assert response.request.headers["content-length"] == str(len(body))
    assert_problem(response, 413)


def test_an_oversized_chunked_body_is_refused(
    client: httpx.Client, embedded_system: RunningSystem
) -> None:
    body = _oversized_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with nothing_written(embedded_system):
        response = client.post(
            REGISTER, content=chunks(), headers={"content-type": "application/json"}
        )

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"name": "A\u0000da"}, id="nul-in-name"),
        pytest.param({"email": "ada\u0000@example.com"}, id="nul-in-email"),
        pytest.param({"password": PASSWORD[:6] + "\u0000" + PASSWORD[6:]}, id="nul-in-password"),
        pytest.param({"name": "A\u001b[31mda"}, id="escape-in-name"),
        pytest.param({"name": "A\u0007da"}, id="bell-in-name"),
        pytest.param({"name": "A\u0008\u0008\u0008Eve"}, id="backspace-in-name"),
        pytest.param({"password": PASSWORD + "\u0001"}, id="control-in-password"),
        pytest.param({"email": "ada\u001f@example.com"}, id="control-in-email"),
        pytest.param({"name": "A\u007fda"}, id="delete-in-name"),
        pytest.param({"name": "A\u009b31mda"}, id="c1-csi-in-name"),
        pytest.param({"name": "A\ud800da"}, id="lone-surrogate-in-name"),
    ],
)
def test_control_characters_are_refused(
    changes: dict[str, str], client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, registration(**changes))

    assert_problem(response, 422)
    (value,) = changes.values()
    assert json.dumps(value)[1:-1] not in response.text, "the offending input is echoed back"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"password": "Sh0rt!"}, id="too-short"),
        pytest.param({"password": "password123"}, id="common"),
        pytest.param({"password": "abababababab"}, id="too-few-distinct-characters"),
        pytest.param(
            {"email": "margaret.hamilton@example.com", "password": "Margaret.Hamilton 1969"},
            id="contains-the-email",
        ),
    ],
)
def test_a_weak_password_is_refused(
    changes: dict[str, str], client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, registration(**changes))

    assert_problem(response, 422)


@pytest.mark.parametrize("length", [129, 1_000, 4_097, 100_000])
def test_an_over_long_password_is_refused(
    length: int, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    password = (PASSWORD * (length // len(PASSWORD) + 1))[:length]

    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, registration(password=password))

    assert_problem(response, 422)


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "ada@example..com",
        "ada @example.com",
        "ada@localhost",
        "<script>@example.com",
        "a" * 250 + "@example.com",
        "",
    ],
)
def test_a_bad_email_is_refused(
    email: str, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = post_json(client, REGISTER, registration(email=email))

    assert_problem(response, 422)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/nope", "/api/v2/users/me", "/api"])
def test_an_unknown_route_is_not_found(
    method: str, path: str, client: httpx.Client, embedded_system: RunningSystem
) -> None:
    with nothing_written(embedded_system):
        response = client.request(method, path, json=registration())

    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/login"),
        ("PUT", "/api/v1/auth/register"),
        ("TRACE", "/api/v1/auth/login"),
        ("PUT", "/api/v1/users/me"),
        ("DELETE", "/api/v1/users/me"),
        ("POST", "/api/v1/users/me"),
    ],
)
def test_an_unknown_method_on_a_known_route_is_not_allowed(
    method: str,
    path: str,
    client: httpx.Client,
    embedded_system: RunningSystem,
    access_token: str,
) -> None:
    with nothing_written(embedded_system):
        response = client.request(method, path, json=registration(), headers=bearer(access_token))

    assert_problem(response, 405)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/../../metrics",
        "/api/v1/users/%2e%2e/%2e%2e/metrics",
        "/api/v1/users/%2E%2E/%2E%2E/metrics",
        "/api/v1/users/..%2f..%2fmetrics",
        "/api/v1/users/%2e%2e%2f%2e%2e%2fmetrics",
        "/api/v1/auth/../../metrics",
        "/api/v1/auth/../users/me",
        "/api/v1/users/./me",
        "/.well-known/jwks.json/../../metrics",
        "/api/v1/users/%252e%252e/%252e%252e/metrics",
    ],
)
def test_a_path_traversal_reaches_nothing(
    path: str, embedded_system: RunningSystem, access_token: str
) -> None:
    # httpx would normalise the dots away; http.client sends the path as written.
    connection = http.client.HTTPConnection(embedded_system.url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", path, headers=bearer(access_token))
        raw = connection.getresponse()
        body = raw.read()
        response = httpx.Response(raw.status, headers=raw.getheaders(), content=body)
    finally:
        connection.close()

    assert_problem(response, 404)
    assert b"# HELP" not in body, "an internal endpoint answered"
