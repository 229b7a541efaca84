"""HTTP Basic credentials: a username and password on every request.

MLflow clients authenticate this way (``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``). Each check is a sign-in -- the same throttle as
``POST /api/v1/auth/login`` and the same scrypt -- so a verified pair is remembered for
`ttl_s` (a client logging a batch per training step must not pay scrypt each time).
The memory holds an HMAC of the pair under a key made at start-up, never the password.
A changed password or a removed user is noticed within `ttl_s`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict

from deardiary.schemas.errors import Unauthenticated
from deardiary.services.auth.identity import Identity, Principal


class BasicCredentials:
    def __init__(self, identity: Identity, ttl_s: float = 30.0, capacity: int = 10_000) -> None:
        self.identity = identity
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def parse(encoded: str) -> tuple[str, str]:
        """(username, password) from the base64 part of ``Authorization: Basic ...``."""
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthenticated("malformed Basic credentials") from exc
        username, colon, password = decoded.partition(":")
        if not colon or not username:
            raise Unauthenticated("Basic credentials need username:password")
        return username, password

    def authenticate(self, encoded: str, client: str = "") -> Principal:
        """The principal of these credentials (blocking: may run scrypt). Wrong ones are
        UNAUTHENTICATED and count against the sign-in throttle like a failed login."""
        username, password = self.parse(encoded)
        digest = hmac.new(self._key, f"{username}\x00{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(digest)
            if hit is not None and hit[1] > now:
                return hit[0]
        principal, _ = self.identity.login(username, password, client)
        with self._lock:
            self._verified[digest] = (principal, now + self.ttl_s)
            self._verified.move_to_end(digest)
            while len(self._verified) > self.capacity:
                self._verified.popitem(last=False)
        return principal
