"""A traveller's account journey through the gateway, embedded and on real servers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.e2e.system import RunningSystem

PASSWORD = "a long enough passphrase"


def register_and_login(client: httpx.Client, name: str = "Ada") -> tuple[str, dict[str, Any]]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    created = client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert created.status_code == 201, created.text
    tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return email, tokens.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_register_login_profile_refresh_logout(system: RunningSystem) -> None:
    with system.client() as client:
        email, tokens = register_and_login(client)
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 900

        me = client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email
        assert me.json()["name"] == "Ada"
        assert me.headers["x-request-id"]

        renamed = client.patch(
            "/api/v1/users/me",
            json={"name": "Ada Lovelace"},
            headers=bearer(tokens["access_token"]),
        )
        assert renamed.status_code == 200
        assert (
            client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])).json()["name"]
            == "Ada Lovelace"
        )

        rotated = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert rotated.status_code == 200, rotated.text
        fresh = rotated.json()
        assert fresh["refresh_token"] != tokens["refresh_token"]
        assert (
            client.get("/api/v1/users/me", headers=bearer(fresh["access_token"])).status_code == 200
        )

        reused = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert reused.status_code == 401
        assert reused.headers["content-type"] == "application/problem+json"
        # Reuse of a rotated token revokes the whole family, the fresh token included.
        assert (
            client.post(
                "/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
            ).status_code
            == 401
        )


def test_logout_revokes_the_refresh_token(system: RunningSystem) -> None:
    with system.client() as client:
        _, tokens = register_and_login(client, "Grace")
        out = client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert out.status_code == 204
        again = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 401


def test_duplicate_email_is_a_conflict(system: RunningSystem) -> None:
    with system.client() as client:
        email, _ = register_and_login(client, "Linus")
        again = client.post(
            "/api/v1/auth/register",
            json={"email": email.upper(), "password": PASSWORD, "name": "Other"},
        )
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"


def test_unknown_user_and_wrong_password_get_the_same_answer(system: RunningSystem) -> None:
    with system.client() as client:
        email, _ = register_and_login(client, "Barbara")
        wrong = client.post(
            "/api/v1/auth/login", json={"email": email, "password": "not it at all"}
        )
        unknown = client.post(
            "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "not it at all"}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json()["detail"] == unknown.json()["detail"]


def test_another_users_profile_is_not_found_but_the_admin_sees_it(system: RunningSystem) -> None:
    from tests.e2e.system import ADMIN_EMAIL, ADMIN_PASSWORD

    with system.client() as client:
        _, alice = register_and_login(client, "Alice")
        _, bob = register_and_login(client, "Bob")
        bob_id = client.get("/api/v1/users/me", headers=bearer(bob["access_token"])).json()["id"]
        assert (
            client.get(f"/api/v1/users/{bob_id}", headers=bearer(alice["access_token"])).status_code
            == 404
        )
        assert (
            client.get(f"/api/v1/users/{bob_id}", headers=bearer(bob["access_token"])).status_code
            == 200
        )
        admin = client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        ).json()
        seen = client.get(f"/api/v1/users/{bob_id}", headers=bearer(admin["access_token"]))
        assert seen.status_code == 200
        assert seen.json()["name"] == "Bob"


def test_jwks_is_public_through_the_gateway(system: RunningSystem) -> None:
    with system.client() as client:
        keys = client.get("/.well-known/jwks.json").json()["keys"]
        assert keys
        assert {key["alg"] for key in keys} == {"EdDSA"}
        assert all("d" not in key for key in keys), "a private key part leaked into the JWKS"
