"""JWT helpers shared by the e2e tests (README "Tokens").

Tokens are made with hmac/hashlib/base64 rather than a JWT library, so that hostile ones
(alg none, HS512, tampered payloads, wrong claim types) can be crafted byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

SECRET = "e2e-secret-" + secrets.token_hex(16)
OTHER_SECRET = "not-the-secret-" + secrets.token_hex(16)

_HMAC = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def make_jwt(claims: dict[str, Any], *, key: str = SECRET, alg: str = "HS256",
             sign_with: str | None = "HS256", header: dict[str, Any] | None = None) -> str:
    """A compact JWS. `alg` goes into the header; `sign_with` is the HMAC actually used
    (None = empty signature, as `alg: none` tokens have)."""
    header = {"alg": alg, "typ": "JWT"} if header is None else header
    signing_input = f"{b64url(json_bytes(header))}.{b64url(json_bytes(claims))}"
    if sign_with is None:
        return signing_input + "."
    mac = hmac.new(key.encode(), signing_input.encode(), _HMAC[sign_with]).digest()
    return f"{signing_input}.{b64url(mac)}"


OMIT = object()


def claims_for(sub: Any = "alice", *, exp_in: Any = 3600, nbf_in: Any = OMIT,
               **extra: Any) -> dict[str, Any]:
    """Claims relative to now: `exp_in`/`nbf_in` seconds from now (`OMIT` leaves the
    claim out; a non-int is put in as given, e.g. a string)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now}
    if sub is not OMIT:
        claims["sub"] = sub
    if exp_in is not OMIT:
        claims["exp"] = now + exp_in if isinstance(exp_in, int) else exp_in
    if nbf_in is not OMIT:
        claims["nbf"] = now + nbf_in if isinstance(nbf_in, int) else nbf_in
    claims.update(extra)
    return claims


def token_for(sub: str, **kwargs: Any) -> str:
    return make_jwt(claims_for(sub, **kwargs))


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url(json_bytes(claims))}.{signature}"
