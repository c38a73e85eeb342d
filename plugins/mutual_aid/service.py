"""The life of a need or an offer, as pure functions: no Matrix, no database.

A need goes open → matched → done, or ends withdrawn, expired or removed::

    open ──!can (helper)──▶ open, with an *offered* match
    open ──!accept (requester)──▶ matched (that match *accepted*, other offers *superseded*)
    open ──!decline (requester)──▶ open (that match *declined*)
    matched ──!withdraw (helper)──▶ open again (the match *backed_out*): the need reopens
    matched ──!withdraw (requester)──▶ withdrawn (matches *backed_out*)
    open | matched ──!done (requester)──▶ done (the accepted match *completed*)
    open ──expiry──▶ expired ──!renew──▶ open
    any ──moderator──▶ removed

An offer is open until it is withdrawn, expires or is removed; a one-off offer can be marked
done by its poster once it has been given. An ongoing offer can be matched any number of times.

Each function checks who is acting and in what state, and either returns a :class:`Transition`
(what the store should write) or raises :class:`AidError` with a message that says what to type
instead. Being "the owner" is decided by the caller (for a private need only the store can tell,
see :mod:`store`), and passed in as ``is_owner``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from civicbot_plugins.mutual_aid.models import (
    ACCEPTED,
    BACKED_OUT,
    CLOSED_STATES,
    COMPLETED,
    DECLINED,
    DONE,
    EXPIRED,
    MATCHED,
    OFFERED,
    OPEN,
    REMOVED,
    SUPERSEDED,
    WITHDRAWN,
    Match,
    Post,
)
from civicbot_plugins.mutual_aid.parsing import DEFAULT_EXPIRY, MAX_EXPIRY, NEED, OFFER

REMIND_BEFORE = timedelta(days=2)
MAX_REPORT = 500

_ENDED = {
    DONE: "is done",
    WITHDRAWN: "was withdrawn",
    EXPIRED: "has expired",
    REMOVED: "was removed by a moderator",
}


class AidError(ValueError):
    """Not allowed now; the message says why and what to type instead."""


@dataclass(frozen=True)
class Transition:
    """What to write. ``match_state`` applies to the match acted on (if any); ``others_state``
    to the post's other live matches (offered or accepted), when not None."""

    post_state: str
    match_state: str | None = None
    others_state: str | None = None
    reopened: bool = False  # the need is open again after a helper backed out
    minutes: int = 0  # timebank minutes to record from helper to requester


def is_expired(post: Post, now: datetime) -> bool:
    """True when the post is past its expiry and was still waiting (open)."""
    return post.state == EXPIRED or (post.state == OPEN and post.expires_at <= now)


def _ended(post: Post, now: datetime, verb: str) -> AidError | None:
    if is_expired(post, now):
        return AidError(
            f"{post.short_id} has expired, so it can't be {verb} now. Its poster can bring it "
            f"back with `!renew {post.short_id}`."
        )
    if post.state in CLOSED_STATES:
        return AidError(f"{post.short_id} {_ENDED[post.state]}, so it can't be {verb} now.")
    return None


def offer_help(
    post: Post, *, is_owner: bool, now: datetime, helper_match: Match | None
) -> Transition:
    """``!can N-42``: a helper offers to help with a need. ``helper_match`` is the helper's
    live match on this need, if they already have one."""
    if post.kind == OFFER:
        raise AidError(
            f"{post.short_id} is an offer, not a need. To ask for it, post what you need with "
            "`!need …`: offers like this one are suggested to you."
        )
    if is_owner:
        raise AidError(
            f"{post.short_id} is your own need. To change it, type `!need {post.short_id} | …`; "
            f"to take it down, `!withdraw {post.short_id}`."
        )
    if (error := _ended(post, now, "helped with")) is not None:
        raise error
    if post.state == MATCHED:
        raise AidError(
            f"Someone is already helping with {post.short_id}. See other needs with `!needs`."
        )
    if helper_match is not None:
        raise AidError(
            f"You have already offered to help with {post.short_id}; the person who asked has "
            "been told and will answer. `!withdraw " + post.short_id + "` takes your offer back."
        )
    return Transition(OPEN, match_state=OFFERED)


def accept(post: Post, match: Match | None, *, is_owner: bool, now: datetime) -> Transition:
    """``!accept N-42``: the requester accepts the helper of ``match`` (their pending offer).
    Every other pending offer on the need is superseded."""
    if not is_owner:
        raise AidError(
            f"Only the person who asked for {post.short_id} can accept help with it. To help, "
            f"type `!can {post.short_id}`."
        )
    if (error := _ended(post, now, "accepted")) is not None:
        raise error
    if post.state == MATCHED:
        raise AidError(
            f"You have already accepted help with {post.short_id}. When it's done, type "
            f"`!done {post.short_id}`."
        )
    if match is None or match.state != OFFERED:
        raise AidError(
            f"Nobody is waiting for an answer on {post.short_id} just now. You'll get a message "
            "when someone offers to help."
        )
    return Transition(MATCHED, match_state=ACCEPTED, others_state=SUPERSEDED)


def decline(post: Post, match: Match | None, *, is_owner: bool) -> Transition:
    """``!decline N-42``: the requester says no thanks to a pending offer; the need stays open."""
    if not is_owner:
        raise AidError(f"Only the person who asked for {post.short_id} can decline help with it.")
    if match is None or match.state != OFFERED:
        raise AidError(f"There is no offer of help waiting for your answer on {post.short_id}.")
    return Transition(post.state, match_state=DECLINED)


def withdraw(post: Post, *, is_owner: bool, helper_match: Match | None) -> Transition:
    """``!withdraw N-42`` or ``!withdraw O-7``.

    The poster takes the post down (its live matches are backed out of); a helper takes back
    their offer or backs out of helping, and a matched need reopens."""
    if is_owner:
        if post.state in CLOSED_STATES:
            raise AidError(f"{post.short_id} {_ENDED[post.state]} already; nothing to withdraw.")
        return Transition(WITHDRAWN, others_state=BACKED_OUT)
    if helper_match is None:
        raise AidError(
            f"You are not helping with {post.short_id}, so there is nothing to withdraw. "
            "`!mine` shows your posts and what you are helping with."
        )
    if helper_match.state == ACCEPTED and post.state == MATCHED:
        return Transition(OPEN, match_state=BACKED_OUT, reopened=True)
    return Transition(post.state, match_state=BACKED_OUT)


def mark_done(
    post: Post,
    *,
    is_owner: bool,
    accepted: Match | None,
    minutes: int = 0,
    timebank: bool = False,
) -> Transition:
    """``!done N-42 [2h]``: the requester says the need was met (hours only in timebank mode,
    and only with a helper to give them to). ``!done O-7``: a one-off offer was given."""
    if not is_owner:
        who = "asked for" if post.kind == NEED else "offered"
        raise AidError(f"Only the person who {who} {post.short_id} can mark it done.")
    if post.state in CLOSED_STATES:
        raise AidError(f"{post.short_id} {_ENDED[post.state]} already.")
    if post.kind == OFFER:
        if post.ongoing:
            raise AidError(
                f"{post.short_id} is an ongoing offer, so it stays open after each time. To "
                f"stop offering it, type `!withdraw {post.short_id}`."
            )
        if minutes:
            raise AidError("Hours are recorded on the need: the requester types `!done N-… 2h`.")
        return Transition(DONE, others_state=COMPLETED)
    if minutes and not timebank:
        raise AidError(
            "This room doesn't keep a timebank, so hours aren't recorded. Type "
            f"`!done {post.short_id}` on its own."
        )
    if minutes and accepted is None:
        raise AidError(
            f"Nobody was matched to help with {post.short_id}, so there's nobody to give hours "
            f"to. Type `!done {post.short_id}` on its own."
        )
    return Transition(
        DONE,
        match_state=COMPLETED if accepted is not None else None,
        others_state=SUPERSEDED,
        minutes=minutes,
    )


def renew(
    post: Post, *, is_owner: bool, now: datetime, extend_by: timedelta = DEFAULT_EXPIRY
) -> tuple[Transition, datetime]:
    """``!renew N-42``: keep a post up for ``extend_by`` more (from now, or from its expiry if
    that is later). An expired post reopens. Returns the transition and the new expiry."""
    if not is_owner:
        raise AidError(f"Only the person who posted {post.short_id} can renew it.")
    if post.state in CLOSED_STATES - {EXPIRED}:
        raise AidError(
            f"{post.short_id} {_ENDED[post.state]}, so it can't be renewed. Post it again with "
            f"`!{post.kind} …` if it's still needed."
        )
    if extend_by > MAX_EXPIRY:
        raise AidError(f"A post can be renewed for at most {MAX_EXPIRY.days} days at a time.")
    base = post.expires_at if post.expires_at > now and post.state != EXPIRED else now
    new_state = OPEN if post.state == EXPIRED else post.state
    return Transition(new_state), min(base + extend_by, now + MAX_EXPIRY)


def expire(post: Post, now: datetime) -> Transition | None:
    """The expiry job: an open post past its expiry expires; pending offers on it are superseded.
    A matched need does not expire (someone is helping); None when there is nothing to do."""
    if post.state == OPEN and post.expires_at <= now:
        return Transition(EXPIRED, others_state=SUPERSEDED)
    return None


def needs_reminder(post: Post, now: datetime, before: timedelta = REMIND_BEFORE) -> bool:
    """True when the poster should be reminded (once) that the post expires soon."""
    return post.state == OPEN and not post.reminded and now < post.expires_at <= now + before


def remove(post: Post, *, is_moderator: bool) -> Transition:
    """A moderator takes a post down; the poster is told by the caller."""
    if not is_moderator:
        raise AidError(
            f"Only a moderator can remove someone else's post. To flag {post.short_id} to them, "
            f"type `!report {post.short_id} <why>`."
        )
    if post.state == REMOVED:
        raise AidError(f"{post.short_id} was removed already.")
    return Transition(REMOVED, others_state=BACKED_OUT)


def check_report(post: Post, reason: str) -> str:
    """The reason of ``!report N-42 <why>``, tidied; it must say something."""
    reason = " ".join(reason.split())
    if not reason:
        raise AidError(
            f"Say what is wrong, like `!report {post.short_id} this looks like a scam`; the "
            "room's moderators get it privately."
        )
    if len(reason) > MAX_REPORT:
        raise AidError(f"Keep the reason under {MAX_REPORT} characters.")
    return reason
