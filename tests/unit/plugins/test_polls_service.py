"""The counting rules (the same as every Matrix client's) and instant runoff, as pure functions."""

from __future__ import annotations

from civicbot_plugins.polls.service import (
    TIE_RULE,
    Response,
    count_ballots,
    instant_runoff,
    leaders,
    tally_responses,
)
from hypothesis import given, settings
from hypothesis import strategies as st

IDS = ["1", "2", "3"]


def r(voter, answers, ts, reason=""):
    return Response(voter, answers, ts, reason)


def test_latest_vote_per_person_wins():
    tally = tally_responses(
        [r("@ann", ["1"], 10), r("@ann", ["2"], 20), r("@bob", ["2"], 15)], IDS, 1
    )
    assert tally.counts == {"1": 0, "2": 2, "3": 0}
    assert tally.voters == 2


def test_order_of_arrival_does_not_matter_only_timestamps():
    tally = tally_responses([r("@ann", ["2"], 20), r("@ann", ["1"], 10)], IDS, 1)
    assert tally.counts["2"] == 1 and tally.counts["1"] == 0


def test_an_empty_vote_withdraws():
    tally = tally_responses([r("@ann", ["1"], 10), r("@ann", [], 20)], IDS, 1)
    assert tally.counts == {"1": 0, "2": 0, "3": 0}
    assert tally.voters == 0 and tally.spoiled == 0


def test_unknown_answers_spoil_and_replace_the_earlier_vote():
    tally = tally_responses(
        [
            r("@ann", ["1"], 10),
            r("@ann", ["9"], 20),  # not an option
            r("@bob", "2", 10),  # not a list
            r("@cat", [2], 10),  # not strings
            r("@dan", None, 10),  # no answers at all
        ],
        IDS,
        1,
    )
    assert tally.voters == 0
    assert tally.spoiled == 4


def test_votes_after_the_end_do_not_count_but_on_the_end_do():
    tally = tally_responses(
        [r("@ann", ["1"], 10), r("@ann", ["2"], 31), r("@bob", ["3"], 30)], IDS, 1, cutoff_ts=30
    )
    assert tally.counts == {"1": 1, "2": 0, "3": 1}


def test_answers_beyond_max_selections_are_cut_off_and_repeats_count_once():
    tally = tally_responses([r("@ann", ["1", "2", "3"], 1), r("@bob", ["3", "3"], 1)], IDS, 2)
    assert tally.counts == {"1": 1, "2": 1, "3": 1}
    assert tally.ballots["@ann"] == ("1", "2")


def test_reasons_travel_with_the_counted_vote():
    tally = tally_responses(
        [r("@ann", ["block"], 1, "too loud"), r("@bob", ["agree"], 1)], ["agree", "block"], 1
    )
    assert tally.reasons == {"@ann": "too loud"}


def test_ranked_counts_first_preferences():
    tally = tally_responses([r("@ann", ["2", "1"], 1), r("@bob", ["2"], 1)], IDS, 3, ranked=True)
    assert tally.counts == {"1": 0, "2": 2, "3": 0}
    assert tally.ballots["@ann"] == ("2", "1")


def test_leaders_and_ties():
    assert leaders({"a": 3, "b": 1}) == ["a"]
    assert leaders({"a": 2, "b": 2}) == ["a", "b"]
    assert leaders({"a": 0, "b": 0}) == []


def test_secret_ballots_are_counted_without_voters():
    tally = count_ballots([(["1"], ""), (["2", "1"], ""), (["block"], "why")], ["1", "2", "block"])
    assert tally.counts == {"1": 2, "2": 1, "block": 1}
    assert all(key.startswith("ballot-") for key in tally.ballots)
    assert list(tally.reasons.values()) == ["why"]


# -- a port of the client's algorithm, to compare against on random input ------------------------
def element_counts(responses, ids, max_selections, cutoff):
    """matrix-js-sdk Poll + matrix-react-sdk collectUserVotes/countVotes + events-sdk
    PollResponseEvent.validateAgainst, written out as directly as possible."""
    kept = [x for x in responses if cutoff is None or x.ts <= cutoff]
    user_votes = {}
    for x in kept:
        other = user_votes.get(x.voter)
        if other is None or other.ts < x.ts:
            user_votes[x.voter] = x
    collected = {}
    for x in user_votes.values():
        answers = x.answers
        if not isinstance(answers, list) or not answers:
            continue
        if any(not isinstance(a, str) for a in answers) or any(a not in ids for a in answers):
            continue
        for a in answers[:max_selections]:
            collected[a] = collected.get(a, 0) + 1
    return {i: collected.get(i, 0) for i in ids}


answer_lists = st.one_of(
    st.lists(st.sampled_from(["1", "2", "3", "4"]), max_size=3, unique=True),
    st.just("junk"),
)
responses = st.lists(
    st.builds(
        Response,
        st.sampled_from(["@a", "@b", "@c", "@d", "@e"]),
        answer_lists,
        st.integers(0, 50),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(responses, st.integers(1, 3), st.one_of(st.none(), st.integers(0, 50)))
def test_tally_equals_the_clients_count(items, max_selections, cutoff):
    # Equal timestamps from one sender are ambiguous in the spec; clients keep the first seen,
    # and so do we, so the comparison holds for them too.
    ours = tally_responses(items, IDS, max_selections, cutoff)
    assert ours.counts == element_counts(items, IDS, max_selections, cutoff)


# -- instant runoff ------------------------------------------------------------------------------
def test_majority_in_the_first_round():
    result = instant_runoff([["a"], ["a"], ["b"]], ["a", "b", "c"])
    assert result.winners == ["a"]
    assert len(result.rounds) == 1
    assert result.rounds[0].note == "majority: 2 of 3"


def test_transfers_change_the_winner():
    ballots = [["a"]] * 4 + [["b", "c"]] * 2 + [["c", "b"]] * 3
    result = instant_runoff(ballots, ["a", "b", "c"])
    # Round 1: a 4, b 2, c 3 -> b out; round 2: a 4, c 5 -> c wins (a had most first choices).
    assert result.winners == ["c"]
    assert [r.eliminated for r in result.rounds] == [["b"], []]
    assert result.rounds[1].counts == {"a": 4, "c": 5}


def test_exhausted_ballots_leave_the_count():
    ballots = [["a"]] * 3 + [["b"]] * 2 + [["c"]] * 2
    result = instant_runoff(ballots, ["a", "b", "c"], seed=1)
    second = result.rounds[1]
    assert second.exhausted == 2
    assert result.winners == ["a"]


def test_first_round_tie_for_last_goes_to_the_seeded_draw():
    # Round 1: a 3, b 2, c 1, d 1: c and d tie for last and there is no earlier round.
    ballots = [["a"]] * 3 + [["b"]] * 2 + [["c", "b"]] + [["d", "a"]]
    result = instant_runoff(ballots, ["a", "b", "c", "d"], seed=7)
    first = result.rounds[0]
    assert len(first.eliminated) == 1 and first.eliminated[0] in ("c", "d")
    assert first.note == "tie for fewest, broken by the seeded draw"
    again = instant_runoff(ballots, ["a", "b", "c", "d"], seed=7)
    assert again.rounds[0].eliminated == first.eliminated  # anyone can repeat the draw
    assert again.winners == result.winners


def test_backwards_tie_break_uses_the_previous_round():
    ballots = [["a"]] * 5 + [["b"]] * 3 + [["c"]] * 4 + [["d", "b"]]
    # Round 1: a 5, b 3, c 4, d 1 -> d out, its ballot moves to b.
    # Round 2: a 5, b 4, c 4 -> b and c tie for last; in round 1 b had fewer, so b goes.
    # Round 3: a 5, c 4 (b's ballots are exhausted) -> a has 5 of 9.
    result = instant_runoff(ballots, ["a", "b", "c", "d"])
    assert result.rounds[1].counts == {"a": 5, "b": 4, "c": 4}
    assert result.rounds[1].eliminated == ["b"]
    assert result.rounds[1].note == "tie for fewest, broken by round 1"
    assert result.rounds[2].exhausted == 4
    assert result.winners == ["a"]


def test_all_remaining_tied_is_a_tie():
    result = instant_runoff([["a"], ["b"]], ["a", "b", "c"])
    assert result.winners == ["a", "b"]
    assert result.tie
    assert result.rounds[0].eliminated == ["c"]  # nobody's choice: dropped first


def test_no_ballots_no_winner():
    assert instant_runoff([], ["a", "b"]).winners == []
    assert "seeded" in TIE_RULE and "tie" in TIE_RULE
