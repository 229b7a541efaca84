"""Password hashing (scrypt, memory-hard, from the standard library) and token secrets.

No home-made crypto: scrypt via hashlib, HMAC-SHA256 for session tokens, sha256 of
high-entropy access-token secrets, and constant-time comparisons throughout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from deardiary.schemas.errors import InvalidArgument

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 2**20, 32, 16
"""The costliest parameters a stored hash may ask for when it is checked."""
MIN_PASSWORD = 8


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"passwords need at least {MIN_PASSWORD} characters")
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n_, r_, p_, salt, digest = stored.split("$")
        n, r, p = int(n_), int(r_), int(p_)
        affordable = n <= MAX_SCRYPT_N and r <= MAX_SCRYPT_R and p <= MAX_SCRYPT_P
        if scheme != "scrypt" or not affordable:
            return False  # a stored hash must not make one sign-in cost minutes
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=n,
            r=r,
            p=p,
            dklen=len(_unb64(digest)),
            maxmem=256 << 20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Access-token secrets are 256 random bits: a plain sha256 is enough to store them."""
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored)


def load_signing_key(path: Path) -> bytes:
    """The server's session-signing key, created once (0600) beside the data."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    return path.read_bytes()


def sign(key: bytes, payload: bytes) -> str:
    return _b64(hmac.new(key, payload, hashlib.sha256).digest())


def b64(data: bytes) -> str:
    return _b64(data)


def unb64(text: str) -> bytes:
    return _unb64(text)
