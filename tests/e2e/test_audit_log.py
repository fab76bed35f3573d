"""Events reach the audit log: a registration is visible there within a second."""

from __future__ import annotations

import time

import httpx

from tests.e2e.system import ADMIN_EMAIL, ADMIN_PASSWORD, RunningSystem
from tests.e2e.test_journey import bearer, register_and_login


def admin_headers(client: httpx.Client) -> dict[str, str]:
    tokens = client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()
    return bearer(tokens["access_token"])


def test_a_registration_is_in_the_audit_log_within_a_second(system: RunningSystem) -> None:
    with system.client() as client:
        admin = admin_headers(client)
        registered_at = time.monotonic()
        email, tokens = register_and_login(client, "Audited")
        user_id = client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])).json()[
            "id"
        ]
        found: list[dict[str, object]] = []
        while time.monotonic() - registered_at < 1.0 and not found:
            page = client.get(
                "/api/v1/events",
                params={"type": "user.created", "subject": user_id},
                headers=admin,
            )
            assert page.status_code == 200, page.text
            found = page.json()["items"]
            if not found:
                time.sleep(0.02)
        assert len(found) == 1, f"user.created for {user_id} not in the audit log within 1 s"
        assert found[0]["data"]["email"] == email  # type: ignore[index]
        assert found[0]["source"] == "users"


def test_a_rename_is_audited_and_patterns_select_by_type(system: RunningSystem) -> None:
    with system.client() as client:
        admin = admin_headers(client)
        _, tokens = register_and_login(client, "Renamed")
        me = client.patch(
            "/api/v1/users/me", json={"name": "New Name"}, headers=bearer(tokens["access_token"])
        ).json()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            items = client.get(
                "/api/v1/events", params={"type": "user.*", "subject": me["id"]}, headers=admin
            ).json()["items"]
            if len(items) == 2:
                break
            time.sleep(0.05)
        assert sorted(item["type"] for item in items) == ["user.created", "user.updated"]
        stats = client.get("/api/v1/events/stats", headers=admin).json()
        assert stats["counts"]["user.created"] >= 1
        assert stats["counts"]["user.updated"] >= 1


def test_the_audit_log_is_for_administrators_only(system: RunningSystem) -> None:
    with system.client() as client:
        _, tokens = register_and_login(client, "Curious")
        refused = client.get("/api/v1/events", headers=bearer(tokens["access_token"]))
        assert refused.status_code == 403
        assert client.get("/api/v1/events").status_code == 401


def test_events_are_paged_with_a_cursor(system: RunningSystem) -> None:
    with system.client() as client:
        admin = admin_headers(client)
        for i in range(3):
            register_and_login(client, f"Paged{i}")
        seen: list[str] = []
        cursor = None
        for _ in range(100):
            params: dict[str, str | int] = {"type": "user.created", "limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            page = client.get("/api/v1/events", params=params, headers=admin).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) >= 4
