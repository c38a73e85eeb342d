"""Matching quality over a set of offers and needs written the way neighbours write (typos and
all), each need labelled with the offer a coordinator would pick. The set was written before
the matcher; see mutual_aid_matching.json. Run with ``-s`` to see the figures."""

from __future__ import annotations

import json
from pathlib import Path

from civicbot_plugins.mutual_aid.parsing import NEED, OFFER

from tests.unit.plugins import mutual_aid_support
from tests.unit.plugins.mutual_aid_support import NOW, post

aid = mutual_aid_support.aid  # the fixture, under the name the tests ask for

DATASET = json.loads((Path(__file__).parent / "mutual_aid_matching.json").read_text())


async def load_offers(store) -> dict[int, str]:
    ids = {}
    for n, offer in enumerate(DATASET["offers"]):
        created = await post(store, OFFER, offer["text"], author=f"@offerer{n}:example.org")
        ids[created.id] = offer["id"]
    return ids


async def rank_all(store, ids, needs):
    results = []
    for need in needs:
        created = await post(store, NEED, need["text"], author="@asker:example.org")
        found = await store.matches_for(created, NOW, limit=3)
        results.append((need, [ids[c.post.id] for c in found]))
    return results


async def test_the_right_offer_is_usually_first_and_almost_always_in_the_top_three(aid):
    ids = await load_offers(aid[1])
    results = await rank_all(aid[1], ids, DATASET["needs"])
    assert len(DATASET["offers"]) >= 40 and len(results) >= 40
    top1 = sum(found[:1] == [need["offer"]] for need, found in results) / len(results)
    top3 = sum(need["offer"] in found[:3] for need, found in results) / len(results)
    misses = [
        (need["text"], need["offer"], found)
        for need, found in results
        if found[:1] != [need["offer"]]
    ]
    print(f"\nmutual_aid matching: top-1 {top1:.0%}, top-3 {top3:.0%} of {len(results)} needs")
    for miss in misses:
        print("  miss:", *miss)
    # The synonym tables were written with the main set in view, so its figures flatter the
    # matcher; the held-out needs (written after the tables, never used to tune them) are the
    # honest estimate. Reported beside the bar the issue sets, not held to it.
    held_out = await rank_all(aid[1], ids, DATASET["holdout_needs"])
    h1 = sum(found[:1] == [need["offer"]] for need, found in held_out) / len(held_out)
    h3 = sum(need["offer"] in found[:3] for need, found in held_out) / len(held_out)
    print(f"mutual_aid held-out: top-1 {h1:.0%}, top-3 {h3:.0%} of {len(held_out)} needs")
    assert top1 >= 0.80, misses
    assert top3 >= 0.95, misses
