"""The life of a need and an offer as pure functions, and the friendly refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from civicbot_plugins.mutual_aid.models import (
    ACCEPTED,
    BACKED_OUT,
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
from civicbot_plugins.mutual_aid.service import (
    AidError,
    accept,
    check_report,
    decline,
    expire,
    mark_done,
    needs_reminder,
    offer_help,
    remove,
    renew,
    withdraw,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def need(**changes) -> Post:
    base = Post(
        id=1,
        kind="need",
        number=42,
        room_id="!r",
        poster="@ann",
        private=False,
        body="help moving a sofa",
        category="moving",
        urgency="anytime",
        area="",
        ongoing=False,
        notify=True,
        thanks=False,
        state=OPEN,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(days=14),
        reminded=False,
        event_id=None,
        times_matched=0,
    )
    return replace(base, **changes)


def offer(**changes) -> Post:
    return need(
        **{"kind": "offer", "number": 7, "body": "a ladder to lend", "ongoing": True, **changes}
    )


def match(state=OFFERED) -> Match:
    return Match(1, 1, "@sam", state, NOW, NOW, None)


def test_a_helper_offers_and_the_requester_accepts_then_marks_done():
    step = offer_help(need(), is_owner=False, now=NOW, helper_match=None)
    assert (step.post_state, step.match_state) == (OPEN, OFFERED)
    step = accept(need(), match(), is_owner=True, now=NOW)
    assert (step.post_state, step.match_state, step.others_state) == (MATCHED, ACCEPTED, SUPERSEDED)
    step = mark_done(need(state=MATCHED), is_owner=True, accepted=match(ACCEPTED))
    assert (step.post_state, step.match_state) == (DONE, COMPLETED)


def test_can_on_your_own_need_says_how_to_edit_or_withdraw():
    with pytest.raises(AidError, match=r"your own need.*!withdraw N-42"):
        offer_help(need(), is_owner=True, now=NOW, helper_match=None)


@pytest.mark.parametrize(
    ("state", "said"), [(DONE, "is done"), (WITHDRAWN, "was withdrawn"), (REMOVED, "removed")]
)
def test_can_on_a_closed_need_is_refused(state, said):
    with pytest.raises(AidError, match=said):
        offer_help(need(state=state), is_owner=False, now=NOW, helper_match=None)


def test_can_on_an_expired_need_points_to_renew_even_before_the_expiry_job_ran():
    stale = need(expires_at=NOW - timedelta(minutes=1))
    with pytest.raises(AidError, match="!renew N-42"):
        offer_help(stale, is_owner=False, now=NOW, helper_match=None)


def test_can_twice_and_can_on_a_matched_need_and_on_an_offer():
    with pytest.raises(AidError, match="already offered"):
        offer_help(need(), is_owner=False, now=NOW, helper_match=match())
    with pytest.raises(AidError, match="already helping"):
        offer_help(need(state=MATCHED), is_owner=False, now=NOW, helper_match=None)
    with pytest.raises(AidError, match="is an offer"):
        offer_help(offer(), is_owner=False, now=NOW, helper_match=None)


def test_only_the_requester_accepts_or_declines():
    with pytest.raises(AidError, match=r"Only the person who asked.*!can N-42"):
        accept(need(), match(), is_owner=False, now=NOW)
    with pytest.raises(AidError, match="Only the person who asked"):
        decline(need(), match(), is_owner=False)


def test_accept_with_nobody_waiting_or_twice():
    with pytest.raises(AidError, match="Nobody is waiting"):
        accept(need(), None, is_owner=True, now=NOW)
    with pytest.raises(AidError, match="already accepted"):
        accept(need(state=MATCHED), match(), is_owner=True, now=NOW)


def test_decline_keeps_the_need_open():
    step = decline(need(), match(), is_owner=True)
    assert (step.post_state, step.match_state) == (OPEN, DECLINED)


def test_a_helper_backing_out_reopens_the_need():
    step = withdraw(need(state=MATCHED), is_owner=False, helper_match=match(ACCEPTED))
    assert (step.post_state, step.match_state, step.reopened) == (OPEN, BACKED_OUT, True)


def test_a_helper_taking_back_a_pending_offer_changes_nothing_else():
    step = withdraw(need(), is_owner=False, helper_match=match())
    assert (step.post_state, step.match_state, step.reopened) == (OPEN, BACKED_OUT, False)


def test_the_requester_withdrawing_backs_everyone_out():
    step = withdraw(need(state=MATCHED), is_owner=True, helper_match=None)
    assert (step.post_state, step.others_state) == (WITHDRAWN, BACKED_OUT)
    with pytest.raises(AidError, match="nothing to withdraw"):
        withdraw(need(state=DONE), is_owner=True, helper_match=None)
    with pytest.raises(AidError, match="not helping"):
        withdraw(need(), is_owner=False, helper_match=None)


def test_done_with_hours_needs_a_timebank_and_a_helper():
    step = mark_done(
        need(state=MATCHED), is_owner=True, accepted=match(ACCEPTED), minutes=90, timebank=True
    )
    assert step.minutes == 90
    with pytest.raises(AidError, match="doesn't keep a timebank"):
        mark_done(need(state=MATCHED), is_owner=True, accepted=match(ACCEPTED), minutes=90)
    with pytest.raises(AidError, match="nobody to give hours"):
        mark_done(need(), is_owner=True, accepted=None, minutes=90, timebank=True)
    assert mark_done(need(), is_owner=True, accepted=None).post_state == DONE
    with pytest.raises(AidError, match="Only the person who asked"):
        mark_done(need(), is_owner=False, accepted=None)


def test_offers_one_off_are_done_once_ongoing_ones_are_withdrawn():
    assert mark_done(offer(ongoing=False), is_owner=True, accepted=None).post_state == DONE
    with pytest.raises(AidError, match=r"ongoing offer.*!withdraw O-7"):
        mark_done(offer(), is_owner=True, accepted=None)


def test_renew_extends_from_the_expiry_and_reopens_an_expired_post():
    step, until = renew(need(), is_owner=True, now=NOW)
    assert step.post_state == OPEN and until == NOW + timedelta(days=28)
    step, until = renew(
        need(state=EXPIRED, expires_at=NOW - timedelta(days=1)), is_owner=True, now=NOW
    )
    assert step.post_state == OPEN and until == NOW + timedelta(days=14)
    with pytest.raises(AidError, match="can't be renewed"):
        renew(need(state=DONE), is_owner=True, now=NOW)
    with pytest.raises(AidError, match="Only the person who posted"):
        renew(need(), is_owner=False, now=NOW)


def test_expiry_only_for_open_posts_past_their_time():
    assert expire(need(expires_at=NOW), NOW).post_state == EXPIRED
    assert expire(need(), NOW) is None
    assert expire(need(state=MATCHED, expires_at=NOW), NOW) is None


def test_a_reminder_once_shortly_before_expiry():
    soon = need(expires_at=NOW + timedelta(days=1))
    assert needs_reminder(soon, NOW)
    assert not needs_reminder(replace(soon, reminded=True), NOW)
    assert not needs_reminder(need(), NOW)


def test_only_moderators_remove_and_reports_need_a_reason():
    assert remove(need(), is_moderator=True).post_state == REMOVED
    with pytest.raises(AidError, match="!report N-42"):
        remove(need(), is_moderator=False)
    assert check_report(need(), "  looks like   a scam ") == "looks like a scam"
    with pytest.raises(AidError, match="Say what is wrong"):
        check_report(need(), "   ")
