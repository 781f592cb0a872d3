"""Which exporter process owns an account: ``--shard=I/N``.

An account belongs to shard ``hash(name) mod N``, where the hash is the first 8
bytes of the SHA-256 of its name: stable across processes, restarts, Python
versions and machines (Python's own ``hash()`` of a string is salted per process),
and spread evenly. Every replica of a shard owns the same accounts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"^(\d{1,4})/(\d{1,4})$")


@dataclass(frozen=True)
class Shard:
    """Shard *index* of *count* (``0/1``: the only one, which owns every account)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with 0 <= I < N; a ValueError says what is wrong."""
        match = _SHARD.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not I/N, e.g. 0/4 for the first of four shards")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"{text!r}: I must be from 0 to N-1 and N at least 1")
        return cls(index, count)

    def owns(self, account: str) -> bool:
        return shard_of(account, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(account: str, count: int) -> int:
    """The shard, out of *count*, that owns the account named *account*."""
    digest = hashlib.sha256(account.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count
