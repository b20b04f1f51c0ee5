"""Decision ids any worker can recognise: the page key in ``<key>-<row>`` carries a MAC.

A worker never sees the decisions other workers logged (they are in their own segments until the learner
ingests them), yet an outcome naming a decision may reach any worker. So the key of each page is 20 random
hex digits followed by 12 hex digits of a keyed BLAKE2b of them, keyed with a secret derived from the
deployment's exploration key: every worker can tell at once, without shared state, whether an id was
issued by this deployment (a guess passes with probability 2**-48). An outcome naming any other id is
still accepted (its event is logged and stored), but counted and reported as unmatched.
"""

from __future__ import annotations

import hashlib
import hmac
import os

_RANDOM_HEX = 20  # 80 random bits per page
_MAC_HEX = 12  # 48 bits of MAC
_HEX = frozenset("0123456789abcdef")


class PageKeys:
    """Makes page keys and recognises the decision ids made from them (``issued``)."""

    __slots__ = ("_secret",)

    def __init__(self, exploration_key: int) -> None:
        self._secret = hashlib.blake2b(
            b"keyart decision ids", key=int(exploration_key).to_bytes(16, "little"), digest_size=32
        ).digest()

    def _mac(self, random_part: str) -> str:
        return hashlib.blake2b(random_part.encode(), key=self._secret, digest_size=_MAC_HEX // 2).hexdigest()

    def new(self) -> str:
        """A fresh page key (32 hex digits, like a uuid4's)."""
        random_part = os.urandom(_RANDOM_HEX // 2).hex()
        return random_part + self._mac(random_part)

    def issued(self, decision_id: str, max_rows: int) -> bool:
        """Whether ``decision_id`` is ``<key>-<row>`` with a key made here and a row below ``max_rows``."""
        key, sep, row = decision_id.rpartition("-")
        if not sep or len(key) != _RANDOM_HEX + _MAC_HEX or not set(key) <= _HEX:
            return False
        if not row.isdigit() or int(row) >= max_rows or (len(row) > 1 and row[0] == "0"):
            return False
        return hmac.compare_digest(self._mac(key[:_RANDOM_HEX]), key[_RANDOM_HEX:])


__all__ = ["PageKeys"]
