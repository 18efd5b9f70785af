"""Secrets: generation, bcrypt hashing and verification without blocking Trio.

Owns: station secrets and API keys (format, entropy, hash) and the process-local
cache of successful verifications. It never logs or returns a secret or a hash.

Cost factor: both kinds of secret are machine-generated with >= 140 bits of
entropy, so bcrypt's work factor adds nothing against offline guessing (that is
what it is for with human passwords); it is bcrypt's minimum, 4 (measured here:
cost 4 ~ 1.0-1.3 ms, 5 ~ 1.7-2.2 ms, 12 ~ 214 ms per check), so that a cold
reconnect storm of 10,000 stations is seconds of CPU, not minutes (docs/performance.md).
Hashes carry their cost: those made at 5 before still verify, and a change here
only affects new secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections import OrderedDict
from typing import Final

import bcrypt
import trio

BCRYPT_ROUNDS: Final = 4
SECRET_LENGTH: Final = 24  # 62**24 ~ 2**142
_ALPHABET: Final = string.ascii_letters + string.digits
_ALL_HEX: Final = re.compile(r"^[0-9A-Fa-f]*$")
API_KEY_PREFIX: Final = "ak_"

# bcrypt runs in worker threads (it releases the GIL); at most this many at once,
# so a reconnect storm cannot starve the database bridge of threads.
_hash_limiter = trio.CapacityLimiter(4)


def new_station_secret() -> str:
    """16-40 letters and digits, never all hex digits.

    Some charger stacks hex-decode an all-hex AuthorizationKey (EVerest libocpp),
    and would then send something else than what we stored.
    """
    while True:
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
        if not _ALL_HEX.match(secret):
            return secret


def new_api_key() -> tuple[str, str]:
    """(key_id, full key). The key id is the public lookup part of the key."""
    key_id = secrets.token_hex(8)
    return key_id, f"{API_KEY_PREFIX}{key_id}_{new_station_secret()}"


def parse_api_key(token: str) -> str | None:
    """The key id of a well-formed API key, else None."""
    if not token.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, rest = token[len(API_KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 16 or not rest:
        return None
    return key_id


async def hash_secret(secret: str) -> str:
    def work() -> str:
        return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()

    return await trio.to_thread.run_sync(work, limiter=_hash_limiter)


class Verifier:
    """bcrypt verification with a bounded cache of successes.

    The cache maps SHA-256 of (user, offered secret) to the stored hash it
    matched: rotating a secret changes the stored hash, so the old entry can
    never match again. Only successes are cached, so a wrong guess always
    costs a bcrypt check -- which is why the listener throttles failures
    before calling `verify`, and lets a throttled station in through
    `verified_before` alone.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._ok: OrderedDict[bytes, str] = OrderedDict()
        self._max = max_entries
        self.bcrypt_checks = 0          # for metrics, and tests that prove none was made
        self.typical_seconds = 0.002    # moving average of one check, thread hop included

    @staticmethod
    def _key(secret: str, user: str) -> bytes:
        return hashlib.sha256(f"{user}\0{secret}".encode()).digest()

    def verified_before(self, secret: str, *, user: str = "") -> str | None:
        """The stored hash this secret matched before, if any; no bcrypt work."""
        return self._ok.get(self._key(secret, user))

    async def verify(self, secret: str, stored_hash: str, *, user: str = "") -> bool:
        key = self._key(secret, user)
        if self._ok.get(key) == stored_hash:
            self._ok.move_to_end(key)
            return True

        def work() -> bool:
            try:
                return bcrypt.checkpw(secret.encode(), stored_hash.encode())
            except ValueError:  # malformed stored hash: never a match
                return False

        self.bcrypt_checks += 1
        started = trio.current_time()
        ok = await trio.to_thread.run_sync(work, limiter=_hash_limiter)
        self.typical_seconds += (trio.current_time() - started - self.typical_seconds) / 16
        if ok:
            self._ok[key] = stored_hash
            self._ok.move_to_end(key)
            if len(self._ok) > self._max:
                self._ok.popitem(last=False)
        return ok


def same_token(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())
