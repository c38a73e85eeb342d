"""Sealing a requester's Matrix id so that only the bot, holding this installation's secret, can
read it back. AES-256-GCM (the ``cryptography`` package) with a random nonce per value: two
sealed copies of the same id look unrelated, so sealed values can't be compared to link a
private need to its requester's other posts, and a value sealed for one post can't be copied
onto another (the post is bound in as associated data)."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class Sealer:
    """Seals and opens short strings under a key that never goes into the database."""

    def __init__(self, key: bytes):
        """``key``: at least 32 bytes of secret, e.g. ``bytes.fromhex(ctx.keyed_hash(
        "mutual_aid:seal"))``; it is stretched to an AES key here."""
        if len(key) < 32:
            raise ValueError("the sealing key must be at least 32 bytes")
        self._aead = AESGCM(hmac.new(key, b"mutual_aid seal v1", hashlib.sha256).digest())

    def seal(self, text: str, context: str) -> bytes:
        """``text`` encrypted and authenticated; ``context`` (e.g. ``"requester:17"``) must be
        given again to open it."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, text.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str | None:
        """The sealed text, or None if it was sealed under another key or context."""
        try:
            plain = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        except (InvalidTag, ValueError):
            return None
        return plain.decode()
