"""Forged, stale and misused tokens sent through the gateway of `wayfare up`: all refused."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.e2e.system import RunningSystem, embedded
from tests.e2e.test_journey import bearer, register_and_login

ME = "/api/v1/users/me"


@dataclass(frozen=True)
class Key:
    kid: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class Traveller:
    id: str
    access_token: str
    refresh_token: str


def active_key(data_dir: Path) -> Key:
    """The users service's current signing key, read as an attacker with the disk would."""
    with contextlib.closing(sqlite3.connect(data_dir / "users.db")) as db:
        kid, pem = db.execute(
            "SELECT kid, private_pem FROM signing_keys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, Ed25519PrivateKey)
    return Key(kid=kid, private_key=private_key)


def fresh_key() -> Key:
    private_key = Ed25519PrivateKey.generate()
    return Key(kid=f"attacker-{uuid.uuid4().hex}", private_key=private_key)


def claims(system: RunningSystem, subject: str, **changes: Any) -> dict[str, Any]:
    """Everything the gateway checks, right; each test breaks one thing."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": system.env.get("WAYFARE_ISSUER", "wayfare"),
        "aud": system.env.get("WAYFARE_AUDIENCE", "wayfare"),
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "role": "traveller",
    }
    payload.update(changes)
    return payload


def signed(key: Key, payload: dict[str, Any], typ: str = "at+jwt") -> str:
    return jwt.encode(
        payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": typ}
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _segment(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@pytest.fixture(scope="module")
def traveller(embedded_system: RunningSystem) -> Traveller:
    with embedded_system.client() as client:
        _, tokens = register_and_login(client, "Mallory")
        me = client.get(ME, headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
    return Traveller(me.json()["id"], tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
def client(embedded_system: RunningSystem) -> Iterator[httpx.Client]:
    with embedded_system.client() as client:
        yield client


def test_a_valid_access_token_is_accepted(client: httpx.Client, traveller: Traveller) -> None:
    me = client.get(ME, headers=bearer(traveller.access_token))

    assert me.status_code == 200, me.text
    assert me.json()["id"] == traveller.id


def test_a_token_forged_with_the_real_key_is_accepted(
    client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    """The control for every forgery below: the recipe itself is what the gateway accepts."""
    token = signed(active_key(embedded_system.data_dir), claims(embedded_system, traveller.id))

    me = client.get(ME, headers=bearer(token))

    assert me.status_code == 200, me.text
    assert me.json()["id"] == traveller.id


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_refused(
    alg: str, client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    header = {"alg": alg, "typ": "at+jwt", "kid": active_key(embedded_system.data_dir).kid}
    token = f"{_segment(header)}.{_segment(claims(embedded_system, traveller.id))}."

    assert_refused(client.get(ME, headers=bearer(token)))


def _public_secrets(key: Key, jwks: list[dict[str, Any]]) -> dict[str, bytes]:
    public = key.private_key.public_key()
    (published,) = [jwk for jwk in jwks if jwk["kid"] == key.kid]
    return {
        "raw-public-bytes": _b64url_decode(published["x"]),
        "jwk-x": published["x"].encode(),
        "jwk-json": json.dumps(published).encode(),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }


@pytest.mark.parametrize("secret", ["raw-public-bytes", "jwk-x", "jwk-json", "pem"])
def test_hs256_signed_with_the_public_key_is_refused(
    secret: str, client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    key = active_key(embedded_system.data_dir)
    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = f"{_segment(header)}.{_segment(claims(embedded_system, traveller.id))}"
    mac = hmac.new(_public_secrets(key, jwks)[secret], signing_input.encode(), hashlib.sha256)
    token = f"{signing_input}.{_b64url(mac.digest())}"

    assert_refused(client.get(ME, headers=bearer(token)))


_HOUR = 3600


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": -_HOUR, "iat": -2 * _HOUR, "nbf": -2 * _HOUR}, id="expired"),
        pytest.param({"nbf": _HOUR}, id="not-yet-valid"),
        pytest.param({"iss": "https://evil.example"}, id="wrong-issuer"),
        pytest.param({"aud": "another-api"}, id="wrong-audience"),
    ],
)
def test_a_correctly_signed_token_with_a_bad_claim_is_refused(
    changes: dict[str, Any],
    client: httpx.Client,
    embedded_system: RunningSystem,
    traveller: Traveller,
) -> None:
    now = int(time.time())  # times in the parameters are offsets from now
    changes = {name: now + v if isinstance(v, int) else v for name, v in changes.items()}
    token = signed(
        active_key(embedded_system.data_dir), claims(embedded_system, traveller.id, **changes)
    )

    assert_refused(client.get(ME, headers=bearer(token)))


def test_a_token_signed_by_an_unknown_key_is_refused(
    client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    token = signed(fresh_key(), claims(embedded_system, traveller.id))

    assert_refused(client.get(ME, headers=bearer(token)))


def test_a_token_naming_the_real_kid_but_signed_by_another_key_is_refused(
    client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    impostor = Key(active_key(embedded_system.data_dir).kid, Ed25519PrivateKey.generate())

    token = signed(impostor, claims(embedded_system, traveller.id))

    assert_refused(client.get(ME, headers=bearer(token)))


def test_a_tampered_payload_is_refused(
    client: httpx.Client, embedded_system: RunningSystem, traveller: Traveller
) -> None:
    _, victim = register_and_login(client, "Victim")
    victim_id = client.get(ME, headers=bearer(victim["access_token"])).json()["id"]
    header, payload, signature = traveller.access_token.split(".")
    stolen = {**json.loads(_b64url_decode(payload)), "sub": victim_id}

    tampered = f"{header}.{_segment(stolen)}.{signature}"

    assert_refused(client.get(ME, headers=bearer(tampered)))
    assert client.get(ME, headers=bearer(traveller.access_token)).json()["id"] == traveller.id


def test_a_refresh_token_is_not_an_access_token(client: httpx.Client, traveller: Traveller) -> None:
    assert jwt.get_unverified_header(traveller.refresh_token)["typ"] == "refresh+jwt"

    assert_refused(client.get(ME, headers=bearer(traveller.refresh_token)))


def _wait_until_unpublished(client: httpx.Client, kid: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kid not in {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{kid} still in the JWKS after {timeout} s")


def test_a_token_signed_by_a_key_removed_from_the_jwks_is_refused(tmp_path: Path) -> None:
    with (
        embedded(
            tmp_path,
            WAYFARE_ACCESS_TOKEN_TTL="2",
            WAYFARE_JWKS_CACHE_TTL="1",
            WAYFARE_JWKS_MIN_REFETCH_INTERVAL="0",
        ) as system,
        system.client() as client,
    ):
        _, tokens = register_and_login(client, "Eve")
        user_id = client.get(ME, headers=bearer(tokens["access_token"])).json()["id"]
        old = active_key(system.data_dir)

        subprocess.run(
            [sys.executable, "-m", "wayfare", "keys", "rotate"],
            env=system.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        current = active_key(system.data_dir)
        assert current.kid != old.kid
        _wait_until_unpublished(client, old.kid)

        assert_refused(client.get(ME, headers=bearer(signed(old, claims(system, user_id)))))
        # The control: the very same recipe with the key now published gets in.
        accepted = client.get(ME, headers=bearer(signed(current, claims(system, user_id))))
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["id"] == user_id
