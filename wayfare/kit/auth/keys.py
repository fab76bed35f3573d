"""Ed25519 signing keys, their `kid` (RFC 7638 thumbprint) and the JWKS document."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["ALGORITHM", "SigningKey", "generate_signing_key", "jwks_document"]

ALGORITHM = "EdDSA"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, kid: str, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return cls(kid=kid, private_key=key)


def _thumbprint(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # RFC 7638: the required members, sorted, no whitespace.
    canonical = orjson.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, option=orjson.OPT_SORT_KEYS
    )
    return _b64url(hashlib.sha256(canonical).digest())


def generate_signing_key() -> SigningKey:
    private_key = Ed25519PrivateKey.generate()
    return SigningKey(kid=_thumbprint(private_key), private_key=private_key)


def jwks_document(public_jwks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": public_jwks}
