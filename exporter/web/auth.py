"""Basic auth: bcrypt checks that are bounded, fair per client, cached, and leak no usernames.

Unknown users are checked against a decoy hash as costly as the costliest
configured one; successful checks are cached under a keyed hash (never the
password); failed ones never are. Checks take turns at a :class:`PasswordGate`.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Mapping

import bcrypt
from cachetools import LRUCache

# bcrypt only ever uses the first 72 bytes of a password; bcrypt>=5 raises on
# longer ones instead of truncating, but hashes made by htpasswd or Go's bcrypt
# were made from the truncated password, so truncate the same way.
_BCRYPT_MAX_PASSWORD = 72


class PasswordGate:
    """Turns at the bcrypt checks: *slots* at a time, first come first served per client.

    bcrypt is slow on purpose, so checks are a resource a flood can exhaust.
    Each client address holds at most one place (running or queued); a second
    request from an address with a place gets no turn (the caller answers 429),
    so a flood from one address costs one place, and a login from elsewhere
    waits behind at most one check per other address. Successful checks are
    cached by the caller and never come here again.
    """

    def __init__(self, slots: int = 2) -> None:
        self._slots = slots
        self._running = 0
        self._queue: collections.deque[str] = collections.deque()
        self._holders: set[str] = set()
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def turn(self, client: str) -> Iterator[bool]:
        """Wait for a check slot for *client*; yields False at once if it already has one."""
        with self._condition:
            if client in self._holders:
                admitted = False
            else:
                admitted = True
                self._holders.add(client)
                self._queue.append(client)
                while self._queue[0] != client or self._running >= self._slots:
                    self._condition.wait()
                self._queue.popleft()
                self._running += 1
                self._condition.notify_all()
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            with self._condition:
                self._running -= 1
                self._holders.discard(client)
                self._condition.notify_all()


def _basic_credentials(authorization: str | None) -> tuple[bytes, bytes] | None:
    """Username and password of an ``Authorization: Basic`` header, as bytes."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # WSGI passes header values as latin-1 decoded text (PEP 3333).
        decoded = base64.b64decode(token.strip().encode("latin-1"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    username, sep, password = decoded.partition(b":")
    return (username, password) if sep else None



class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes."""

    def __init__(self, gate: PasswordGate | None = None, cache_size: int = 256) -> None:
        # bcrypt is deliberately slow: a few checks at a time keep a flood of bad
        # passwords to a core or two, and cached successes never wait for a turn.
        self._gate = gate or PasswordGate()
        self._cache_lock = threading.Lock()
        self._verified: LRUCache[bytes, bool] = LRUCache(maxsize=cache_size)
        # Cache keys are keyed hashes: a memory dump then holds neither a password
        # nor an unsalted digest that would be faster to brute-force than bcrypt.
        self._cache_key = secrets.token_bytes(32)
        self._decoys: dict[int, bytes] = {}
        self._decoy_lock = threading.Lock()

    def decoy(self, cost: int) -> bytes:
        """A hash for unknown users at *cost*, made once (no timing oracle)."""
        with self._decoy_lock:
            if cost not in self._decoys:
                self._decoys[cost] = bcrypt.hashpw(secrets.token_bytes(16),
                                                   bcrypt.gensalt(rounds=cost))
            return self._decoys[cost]

    def forget(self) -> None:
        """Drop the cached successes (the users changed)."""
        with self._cache_lock:
            self._verified.clear()

    def check(self, users: Mapping[bytes, bytes], decoy_cost: int, authorization: str | None,
              client: str) -> bool | None:
        """Whether *authorization* names one of *users* with the right password.

        None when *client* already has a check running (answer 429). Unknown
        users are checked against a decoy hash of *decoy_cost*.
        """
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        username, password = credentials
        stored = users.get(username)
        hashed = stored if stored is not None else self.decoy(decoy_cost)
        key = hmac.new(self._cache_key, b"\0".join(
            (len(username).to_bytes(4, "big"), username, hashed, password)), "sha256").digest()
        if stored is not None:
            with self._cache_lock:
                if self._verified.get(key):
                    return True
        with self._gate.turn(client) as admitted:
            if not admitted:
                return None
            try:
                matches = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
            except ValueError:
                matches = False
        if matches and stored is not None:
            with self._cache_lock:
                self._verified[key] = True
            return True
        return False
