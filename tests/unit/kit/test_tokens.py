"""Signing and verifying tokens: what verifies, what is refused, what is remembered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from wayfare.kit.auth import (
    ACCESS_TYP,
    REFRESH_TYP,
    InvalidToken,
    Principal,
    SigningKey,
    TokenSigner,
    TokenVerifier,
    generate_signing_key,
)

ISSUER = "wayfare-test"
AUDIENCE = "wayfare-test-api"


class InMemoryKeys:
    """The JWKS as a dict; remembers which kids were asked for."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = {key.kid: jwt.PyJWK(key.public_jwk) for key in keys}
        self.lookups: list[str] = []

    async def __call__(self, kid: str) -> jwt.PyJWK | None:
        self.lookups.append(kid)
        return self.keys.get(kid)


@pytest.fixture
def key() -> SigningKey:
    return generate_signing_key()


@pytest.fixture
def keys(key: SigningKey) -> InMemoryKeys:
    return InMemoryKeys(key)


@pytest.fixture
def verifier(keys: InMemoryKeys) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


signer = TokenSigner(issuer=ISSUER, audience=AUDIENCE)


def access_token(key: SigningKey, *, ttl: int = 300, **claims: Any) -> str:
    token, _ = signer.sign(key, typ=ACCESS_TYP, subject="user-1", ttl=ttl, claims=claims)
    return token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64url(orjson.dumps(value))


def good_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "jti-1",
        "role": "traveller",
    }
    claims.update(changes)
    return claims


def forged(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """Signed with the real key, so only what the test changed can make it fail."""
    return jwt.encode(
        claims,
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid, "typ": ACCESS_TYP, **header},
    )


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


async def test_a_valid_access_token_verifies_into_its_principal(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    token, claims = signer.sign(
        key, typ=ACCESS_TYP, subject="user-7", ttl=300, claims={"role": "admin"}
    )

    principal = await verifier.verify(token)

    assert principal == Principal(
        user_id="user-7", role="admin", token=token, expires_at=claims["exp"]
    )
    assert principal.is_admin


async def test_a_token_without_a_role_is_a_traveller(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    claims = good_claims()
    del claims["role"]

    assert (await verifier.verify(forged(key, claims))).role == "traveller"


async def test_a_token_forged_with_the_right_key_and_claims_verifies(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    """The control for the refusals below: the forging recipe itself is sound."""
    principal = await verifier.verify(forged(key, good_claims()))
    assert principal.user_id == "user-1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_an_unsigned_token_is_refused(
    alg: str, key: SigningKey, verifier: TokenVerifier
) -> None:
    header = {"alg": alg, "typ": ACCESS_TYP, "kid": key.kid}
    token = f"{_segment(header)}.{_segment(good_claims())}."

    with pytest.raises(InvalidToken):
        await verifier.verify(token)


def _public_secrets(key: SigningKey) -> dict[str, bytes]:
    public = key.private_key.public_key()
    return {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "jwk-x": key.public_jwk["x"].encode(),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }


@pytest.mark.parametrize("secret", ["raw", "jwk-x", "pem"])
async def test_hs256_signed_with_the_public_key_is_refused(
    secret: str, key: SigningKey, verifier: TokenVerifier
) -> None:
    header = {"alg": "HS256", "typ": ACCESS_TYP, "kid": key.kid}
    token = hs256(header, good_claims(), _public_secrets(key)[secret])

    with pytest.raises(InvalidToken, match="not allowed"):
        await verifier.verify(token)


_HOUR = 3600
_ABSENT = object()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": -_HOUR}, id="expired"),
        pytest.param({"nbf": _HOUR}, id="not-yet-valid"),
        pytest.param({"iat": _HOUR}, id="issued-in-the-future"),
    ],
)
async def test_a_token_outside_its_lifetime_is_refused(
    changes: dict[str, int], key: SigningKey, verifier: TokenVerifier
) -> None:
    now = int(time.time())
    claims = good_claims(**{name: now + offset for name, offset in changes.items()})

    with pytest.raises(InvalidToken):
        await verifier.verify(forged(key, claims))


async def test_an_expiry_within_the_leeway_is_tolerated(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    claims = good_claims(exp=int(time.time()) - verifier.leeway + 2)
    assert (await verifier.verify(forged(key, claims))).user_id == "user-1"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"iss": "someone-else"}, id="wrong-issuer"),
        pytest.param({"aud": "another-api"}, id="wrong-audience"),
        pytest.param({"aud": ["another-api"]}, id="wrong-audience-list"),
    ],
)
async def test_a_token_for_someone_else_is_refused(
    changes: dict[str, Any], key: SigningKey, verifier: TokenVerifier
) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify(forged(key, good_claims(**changes)))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"])
async def test_a_token_missing_a_required_claim_is_refused(
    claim: str, key: SigningKey, verifier: TokenVerifier
) -> None:
    claims = good_claims()
    del claims[claim]

    with pytest.raises(InvalidToken):
        await verifier.verify(forged(key, claims))


async def test_a_token_signed_by_an_unknown_key_is_refused(verifier: TokenVerifier) -> None:
    stranger = generate_signing_key()

    with pytest.raises(InvalidToken, match="unknown kid"):
        await verifier.verify(forged(stranger, good_claims()))


async def test_a_token_claiming_a_known_kid_but_signed_by_another_key_is_refused(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    stranger = generate_signing_key()

    with pytest.raises(InvalidToken):
        await verifier.verify(forged(stranger, good_claims(), kid=key.kid))


@pytest.mark.parametrize(
    "kid",
    [pytest.param(_ABSENT, id="absent"), pytest.param("", id="empty"), pytest.param(42, id="int")],
)
async def test_a_token_without_a_usable_kid_is_refused(
    kid: object, key: SigningKey, verifier: TokenVerifier
) -> None:
    header = {"alg": "EdDSA", "typ": ACCESS_TYP} | ({} if kid is _ABSENT else {"kid": kid})
    signing_input = f"{_segment(header)}.{_segment(good_claims())}"
    token = f"{signing_input}.{_b64url(key.private_key.sign(signing_input.encode()))}"

    with pytest.raises(InvalidToken, match=r"no kid|Key ID"):
        await verifier.verify(token)


async def test_a_tampered_payload_is_refused(key: SigningKey, verifier: TokenVerifier) -> None:
    token = access_token(key)
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered = f"{header}.{_segment({**claims, 'sub': 'user-2', 'role': 'admin'})}.{signature}"

    assert (await verifier.verify(token)).user_id == "user-1"
    with pytest.raises(InvalidToken):
        await verifier.verify(tampered)


@pytest.mark.parametrize("typ", [REFRESH_TYP, "JWT", None])
async def test_a_token_of_another_type_is_not_an_access_token(
    typ: str | None, key: SigningKey, verifier: TokenVerifier
) -> None:
    with pytest.raises(InvalidToken, match="token type"):
        await verifier.verify(forged(key, good_claims(), typ=typ))


async def test_a_refresh_verifier_refuses_access_tokens(
    key: SigningKey, keys: InMemoryKeys
) -> None:
    refresh = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, typ=REFRESH_TYP)
    token, _ = signer.sign(key, typ=REFRESH_TYP, subject="user-1", ttl=300)

    assert (await refresh.verify_claims(token))["sub"] == "user-1"
    with pytest.raises(InvalidToken):
        await refresh.verify(access_token(key))


@pytest.mark.parametrize(
    "token", ["", "not-a-token", "a.b", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"]
)
async def test_a_malformed_token_is_refused(token: str, verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_remembered_token_is_answered_without_looking_up_its_key(
    key: SigningKey, keys: InMemoryKeys, verifier: TokenVerifier
) -> None:
    token = access_token(key)
    first = await verifier.verify(token)

    again = await verifier.verify(token)

    assert again is first
    assert keys.lookups == [key.kid]


async def test_a_remembered_token_is_refused_once_it_expires(
    key: SigningKey, keys: InMemoryKeys
) -> None:
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway=0)
    if time.time() % 1 > 0.8:
        # Too close to the next second: the one-second token might expire before use.
        await asyncio.sleep(1 - time.time() % 1)
    now = int(time.time())
    token, claims = signer.sign(key, typ=ACCESS_TYP, subject="user-1", ttl=1, now=now)
    assert (await verifier.verify(token)).expires_at == claims["exp"]

    await asyncio.sleep(max(0.0, claims["exp"] - time.time()) + 0.01)

    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(token)


async def test_forget_drops_remembered_tokens(
    key: SigningKey, keys: InMemoryKeys, verifier: TokenVerifier
) -> None:
    token = access_token(key)
    await verifier.verify(token)
    del keys.keys[key.kid]  # the key leaves the JWKS
    assert (await verifier.verify(token)).user_id == "user-1", "not remembered"

    verifier.forget()

    with pytest.raises(InvalidToken, match="unknown kid"):
        await verifier.verify(token)
    assert keys.lookups == [key.kid, key.kid]


async def test_a_full_cache_starts_afresh(key: SigningKey, keys: InMemoryKeys) -> None:
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, cache_size=2)
    tokens = [access_token(key) for _ in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert len(keys.lookups) == 3

    await verifier.verify(tokens[2])
    await verifier.verify(tokens[0])

    assert len(keys.lookups) == 4, "the newest stays remembered, the evicted is looked up"
