"""What the consultations plugin keeps in the main database: the rows as dataclasses (SQL is in
:mod:`store`, the tables in :mod:`migrations`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from civicbot_plugins.consultations.service import UPDATED

FORGOTTEN = "forgotten:"  # the stand-in a forgotten person's answers keep, so totals stay


@dataclass
class Consultation:
    id: int
    room_id: str
    author: str
    title: str
    description: str
    visibility: str
    moderated: bool
    closes_at: int
    state: str
    status: str
    salt: str
    root_event: str | None
    created_at: int
    closed_at: int | None
    responded_at: int | None
    overdue_noticed_at: int | None
    summary_posted: bool
    counts_minimum: int = 0  # fixed when it opened
    close_event: str | None = None  # the `!consult close` that closed it, if one did

    def threshold(self, configured: int) -> int:
        """The counts threshold protecting its respondents: as it was when it opened, or
        higher if the room has raised it since (never lower)."""
        return max(self.counts_minimum, configured)

    @property
    def label(self) -> str:
        return f"C-{self.id}"

    @property
    def state_text(self) -> str:
        return f"updated: {self.status}" if self.state == UPDATED and self.status else self.state


@dataclass
class Update:
    kind: str
    status: str
    text: str
    author: str
    posted_at: int


COLUMNS = (
    "id, room_id, author, title, description, visibility, moderated, closes_at, state, status, "
    "salt, root_event, created_at, closed_at, responded_at, overdue_noticed_at, summary_posted, "
    "counts_minimum, close_event"
)


def consultation_of(row: Any) -> Consultation:
    values = list(row)
    values[6] = bool(values[6])
    values[16] = bool(values[16])  # summary_posted
    return Consultation(*values)
