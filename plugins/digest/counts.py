"""The room's week in numbers, counted as events go by and written in batches.

Observers run for every message, so they only add to dicts in memory; :meth:`WeekCounter.flush`
writes everything in one transaction every few seconds and at teardown. A crash loses at most
the counts since the last flush (a few seconds of messages), which a weekly summary can bear:
the events of the batch that was being handled are replayed after the restart and counted then,
so roughly as much is counted twice as is lost. Nothing here is ever private: numbers and a
keyed hash per member, no text and no Matrix id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

from civicbot_plugins.digest.store import DigestStore

HOUR = 3600


class WeekCounter:
    def __init__(
        self,
        store: DigestStore,
        keyed_hash: Callable[[str], str],
        is_private: Callable[[str], Awaitable[bool]] | None = None,
    ):
        self._store = store
        self._hash = keyed_hash
        # A room of two (a DM) is never counted: its hourly counts would say when its person
        # wrote to the bot. Asked once per room per flush, not per message.
        self._is_private = is_private
        self._messages: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._replies: defaultdict[tuple[str, int, str], int] = defaultdict(int)
        self._joins: dict[tuple[str, str], int] = {}

    def message(self, room_id: str, at: int, thread_root: str | None) -> None:
        """One message at ``at`` (UTC seconds); a thread reply also counts for its thread."""
        hour = at - at % HOUR
        self._messages[room_id, hour] += 1
        if thread_root:
            self._replies[room_id, hour, thread_root] += 1

    def joined(self, room_id: str, user_id: str, at: int) -> None:
        """Someone's membership became ``join`` (a first join counts as a new member)."""
        self._joins.setdefault((room_id, self._hash(f"digest-member:{user_id}")), at)

    @property
    def pending(self) -> bool:
        return bool(self._messages or self._replies or self._joins)

    async def flush(self) -> None:
        """Write what was counted since the last flush, in one transaction."""
        if not self.pending:
            return
        messages, replies, joins = self._messages, self._replies, self._joins
        self._messages, self._replies, self._joins = defaultdict(int), defaultdict(int), {}
        if self._is_private is not None:
            rooms = {room for room, _ in messages} | {room for room, _, _ in replies}
            private = {room for room in rooms if await self._is_private(room)}
            if private:
                messages = defaultdict(
                    int, {k: n for k, n in messages.items() if k[0] not in private}
                )
                replies = defaultdict(
                    int, {k: n for k, n in replies.items() if k[0] not in private}
                )
        try:
            await self._store.add_counts(
                [(room, hour, n) for (room, hour), n in messages.items()],
                [(room, hour, root, n) for (room, hour, root), n in replies.items()],
                [(room, member, at) for (room, member), at in joins.items()],
            )
        except BaseException:
            self._merge_back(messages, replies, joins)  # try again at the next flush
            raise

    def _merge_back(
        self,
        messages: dict[tuple[str, int], int],
        replies: dict[tuple[str, int, str], int],
        joins: dict[tuple[str, str], int],
    ) -> None:
        for key, n in messages.items():
            self._messages[key] += n
        for rkey, n in replies.items():
            self._replies[rkey] += n
        for jkey, at in joins.items():
            self._joins.setdefault(jkey, at)

    def forget(self, user_id: str) -> str:
        """Drop a buffered join of ``user_id``; returns the hash their stored rows carry."""
        member = self._hash(f"digest-member:{user_id}")
        self._joins = {k: v for k, v in self._joins.items() if k[1] != member}
        return member


def _without(
    counts: defaultdict[tuple[str, ...], int], rooms: set[str]
) -> defaultdict[tuple[str, ...], int]:
    return defaultdict(int, {key: n for key, n in counts.items() if key[0] not in rooms})
