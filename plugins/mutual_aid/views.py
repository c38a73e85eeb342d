"""How posts read in messages: one line per post, ages, the de-identified room announcement.
Pure: no Matrix, no database. Nothing here can name a private need's requester: posts read
from the store have ``poster`` None for them, and no line shows a poster anyway."""

from __future__ import annotations

from datetime import datetime

from civicbot_plugins.mutual_aid.models import Candidate, Match, Post
from civicbot_plugins.mutual_aid.parsing import ANYTIME, NEED

from civicbot.api import matrix_to

HAND = "✋"


def age(post: Post, now: datetime) -> str:
    """``"today"``, ``"1 day"``, ``"5 days"``: how long the post has been up."""
    days = max(0, (now - post.created_at).days)
    if days == 0:
        return "today"
    return f"{days} day{'s' if days != 1 else ''}"


def line(post: Post, now: datetime) -> str:
    """``N-42 · this week · moving · Elm Road — help moving a sofa (up 2 days)``."""
    return post.short_id + details(post, now)


def details(post: Post, now: datetime) -> str:
    """A post's line after its id: `` · this week · moving · Elm Road — help … (up 2 days)``."""
    parts = [""]
    if post.urgency != ANYTIME:
        parts.append(post.urgency)
    if post.category:
        parts.append(post.category)
    if post.area:
        parts.append(post.area)
    if post.kind != NEED:
        parts.append("ongoing" if post.ongoing else "one-off")
    return f"{' · '.join(parts)} — {post.body} (up {age(post, now)})"


def digest_row(post: Post, room_id: str, rest: str) -> dict[str, str]:
    """A post in the digest of ``room_id`` (where it was posted): its id, the ``rest`` of its
    line, and a link to the bot's announcement there. A private need's announcement is the
    de-identified one in the room, sent by the bot: the link leads to nothing about who asked
    (the DM it came from is never stored)."""
    link = matrix_to(room_id, post.event_id) if post.event_id else ""
    return {"label": post.short_id, "rest": rest, "link": link}


def lines(posts: list[Post], now: datetime) -> list[str]:
    return [line(post, now) for post in posts]


def helping_lines(helping: list[tuple[Post, Match]], now: datetime) -> list[str]:
    """The needs someone offered to help with, and where each stands."""
    return [f"helping: {line(post, now)} [{match.state}]" for post, match in helping]


def match_lines(found: list[Candidate], now: datetime) -> list[str]:
    return [line(candidate.post, now) for candidate in found]


def announce_values(post: Post, prefix: str) -> dict[str, object]:
    """What the room announcement of a post shows: never who posted a private need."""
    return {
        "post": post,
        "private": post.private,
        "urgency": "" if post.urgency == ANYTIME else post.urgency,
        "hand": HAND,
        "prefix": prefix,
    }


def posted(post: Post, suggested: bool, direct: bool, matches: list[str], prefix: str) -> str:
    """The reply to a new post: its id, its category (and how to change it), the best matches."""
    where = " in the room, without your name" if direct else ""
    text = f"{post.short_id} is posted{where}: {post.body}"
    if post.category:
        text += f"\nCategory: {post.category}" + (
            f" (my guess: add `| category: …` to `{prefix}{post.kind} {post.short_id} | …` "
            "to change it)"
            if suggested
            else ""
        )
    if matches:
        label = "Offers that may fit" if post.kind == NEED else "Needs you may be able to help"
        text += f"\n{label}:\n" + "\n".join(f"• {m}" for m in matches)
    return text + (
        f"\nIt stays up until {post.expires_at:%a %-d %b}; "
        f"`{prefix}withdraw {post.short_id}` takes it down."
    )
