"""Capture real /sync answers from a local Synapse for tests/unit/test_nio_schemas.py.

    python tests/unit/captured/capture_syncs.py   # writes tests/unit/captured/syncs.json

A reader account is invited to rooms where residents (one with encryption) do what the bot
sees in a neighbourhood room: messages, replies, threads, edits, reactions, MSC3381 polls,
redactions, files, state changes, invites, joins, leaves, bans, a name change, an encrypted
room. Its first full-state sync and the syncs after each step are written out as Synapse sent
them (every event: a timeline limit of 100), to compare nio's validator with ours on real events.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from civicbot.testing.client import Resident
from civicbot.testing.encrypted import EncryptedResident
from civicbot.testing.synapse import LocalSynapse

PASSWORD = "a capture password"
OUT = Path(__file__).with_name("syncs.json")


async def raw_sync(reader: Resident, since: str | None, full_state: bool = False) -> dict:
    everything = json.dumps({"room": {"timeline": {"limit": 100}}})
    query = f"timeout=0&filter={quote(everything)}" + (f"&since={quote(since)}" if since else "")
    query += "&full_state=true" if full_state else ""
    return await reader._request("GET", f"/_matrix/client/v3/sync?{query}")


async def main(base: Path) -> None:
    synapse = LocalSynapse(base / "synapse")
    synapse.start()
    try:
        ann = await Resident.login(synapse.url, synapse.register("ann", PASSWORD), PASSWORD)
        bob = await Resident.login(synapse.url, synapse.register("bob", PASSWORD), PASSWORD)
        reader = await Resident.login(synapse.url, synapse.register("reader", PASSWORD), PASSWORD)
        eve = await EncryptedResident.login(
            synapse.url, synapse.register("eve", PASSWORD), PASSWORD, base / "eve"
        )
        syncs: list[dict] = []
        room = await ann.create_room(name="Elm Street", invite=[reader.user_id, bob.user_id])
        await reader.join(room)
        await bob.join(room)
        first = await raw_sync(reader, None, full_state=True)
        syncs.append(first)
        since = first["next_batch"]

        async def step() -> None:
            nonlocal since
            answer = await raw_sync(reader, since)
            syncs.append(answer)
            since = answer["next_batch"]

        hello = await ann.send_text(room, "!poll Which mural? | Birds | Bikes")
        await bob.send_text(room, "a reply", reply_to=hello)
        await bob.send_text(room, "in a thread too", thread_root=hello, mentions=[ann.user_id])
        await bob.send_event(room, "m.room.message", {
            "msgtype": "m.text", "body": "in a thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": hello},
        })  # fmt: skip
        await bob.send_event(room, "m.room.message", {
            "msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text",
            "body": "fixed"}, "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
        })  # fmt: skip
        await bob.react(room, hello, "✋")
        poll = await ann.send_event(room, "org.matrix.msc3381.poll.start", {
            "org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": "Lunch?"},
            "kind": "org.matrix.msc3381.poll.disclosed", "max_selections": 1,
            "answers": [{"id": "a", "org.matrix.msc1767.text": "Soup"},
                        {"id": "b", "org.matrix.msc1767.text": "Bread"}]},
            "org.matrix.msc1767.text": "Lunch?\n1. Soup\n2. Bread",
        })  # fmt: skip
        await bob.send_event(room, "org.matrix.msc3381.poll.response", {
            "m.relates_to": {"rel_type": "m.reference", "event_id": poll},
            "org.matrix.msc3381.poll.response": {"answers": ["a"]},
        })  # fmt: skip
        await ann.send_event(room, "org.matrix.msc3381.poll.end", {
            "m.relates_to": {"rel_type": "m.reference", "event_id": poll},
            "org.matrix.msc1767.text": "The poll has ended.",
        })  # fmt: skip
        await ann.send_event(room, "m.room.message", {
            "msgtype": "m.notice", "body": "**bold**", "format": "org.matrix.custom.html",
            "formatted_body": "<b>bold</b>", "m.mentions": {"user_ids": [bob.user_id]},
        })  # fmt: skip
        await ann.send_event(room, "m.room.message", {
            "msgtype": "m.file", "body": "minutes.ics", "url": "mxc://localhost/abc",
            "info": {"mimetype": "text/calendar", "size": 120},
        })  # fmt: skip
        await ann.send_event(room, "m.room.message", {"msgtype": "m.emote", "body": "waves"})
        gone = await bob.send_text(room, "oops")
        await bob.redact(room, gone, "typo")
        await step()
        await ann.send_state(room, "m.room.topic", {"topic": "Our street"})
        await ann.send_state(room, "m.room.name", {"name": "Elm Street residents"})
        await ann.set_power_level(room, bob.user_id, 50)
        await ann.send_state(room, "m.room.join_rules", {"join_rule": "public"})
        await ann.send_state(room, "m.room.history_visibility", {"history_visibility": "shared"})
        await ann.send_state(room, "m.room.guest_access", {"guest_access": "forbidden"})
        await ann.send_state(room, "m.room.canonical_alias", {})
        await ann.send_state(room, "m.room.avatar", {"url": "mxc://localhost/avatar"})
        await ann.send_state(room, "m.room.pinned_events", {"pinned": [hello]})
        await bob._request("PUT", f"/_matrix/client/v3/profile/{quote(bob.user_id)}/displayname",
                           {"displayname": "Bob B"})  # fmt: skip
        await step()
        eve_room = await eve.create_room(name="Quiet corner", invite=[reader.user_id])
        await reader.join(eve_room)
        await step()
        await eve.send_text(eve_room, "!ping")
        await ann.invite(room, eve.user_id)
        await eve.join(room)
        await ann.ban(room, eve.user_id, "spam")
        await bob.leave(room)
        space = await ann.create_room(name="Neighbourhood", invite=[reader.user_id])
        await step()
        dm = await ann.create_room(invite=[reader.user_id], is_direct=True)
        await step()
        await ann.send_state(space, "m.space.child", {"via": ["localhost"]}, state_key=room)
        await ann.send_state(room, "m.room.tombstone", {"body": "moved", "replacement_room": dm})
        await step()
        await reader.leave(eve_room)
        await step()
        OUT.write_text(json.dumps(syncs, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"wrote {len(syncs)} syncs to {OUT}")
        for each in (ann, bob, reader, eve):
            await each.close()
    finally:
        synapse.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
    sys.exit(0)
