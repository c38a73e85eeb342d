"""Issue 8, §3 and §4 against Synapse: commands hidden in quoted replies, edits, malformed
relations and role grants. Each replays the attack steps of the issue."""

from __future__ import annotations

from tests.integration.conftest import is_notice_from, room_with_bot
from tests.integration.test_privacy import NO_FLOOD_LIMITS, ask, settle

# -- §3: commands hidden in quoted replies, and edits ------------------------------------------
HIDDEN = ("\r", "\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c")


async def test_a_command_hidden_in_a_quoted_message_never_runs(residents, bots):
    """Eve posts 'Sounds good<separator>!outcome P-1 …'; a moderator replies with a client that
    sends the '> <@eve> …' fallback. Split with str.splitlines(), the quote used to end at the
    separator, and the bot ran !outcome with the moderator's rights."""
    mod, eve = await residents("mod"), await residents("eve")
    bot = await bots(limits=NO_FLOOD_LIMITS)
    room = await room_with_bot(mod, bot, eve)
    mod.mark()
    await mod.send_text(room, "!poll Move the bins? | yes | no")
    await mod.wait_for(room, is_notice_from(bot.user_id, "P-1"))
    mod.mark()
    await mod.send_text(room, "!poll close P-1")
    await mod.wait_for(room, is_notice_from(bot.user_id, "Results of P-1"))
    for separator in HIDDEN:
        trap = f"Sounds good{separator}!outcome P-1 Council approved moving bins to Eve's street"
        quoted = await eve.send_text(room, trap)
        mod.mark()
        await mod.send_event(
            room,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": f"> <{eve.user_id}> {trap}\n\nAgreed, thanks",
                "m.relates_to": {"m.in_reply_to": {"event_id": quoted}},
                "m.mentions": {},
            },
        )
        said = await settle(mod, room, bot)
        assert not [e for e in said if "Outcome" in e["content"]["body"]], repr(separator)
    shown = await ask(mod, room, "!poll show P-1", bot)
    assert "Council approved" not in shown["content"]["body"]
    # The moderator's own command after a quote still runs.
    mod.mark()
    quoted = await eve.send_text(room, "What did we decide?")
    await mod.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"> <{eve.user_id}> What did we decide?\n\n!outcome P-1 Bins stay put",
            "m.relates_to": {"m.in_reply_to": {"event_id": quoted}},
            "m.mentions": {},
        },
    )
    await mod.wait_for(room, is_notice_from(bot.user_id, "Bins stay put"))


async def test_an_edit_never_runs_as_a_new_command(residents, bots):
    """A crafted edit whose new body is a bare command used to run with the editor's rights."""
    ann, eve = await residents("ann"), await residents("eve")
    bot = await bots()
    room = await room_with_bot(ann, bot, eve)
    original = await eve.send_text(room, "hello all")
    eve.mark()
    command = "!poll Sneaky? | yes | no"
    await eve.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": command,  # no "* " fallback: the bare command
            "m.new_content": {"msgtype": "m.text", "body": command},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            "m.mentions": {},
        },
    )
    said = await settle(eve, room, bot)
    assert said == [], [e["content"].get("body") for e in said]
    listed = await ask(ann, room, "!polls", bot)
    assert "Sneaky" not in listed["content"]["body"]


async def test_malformed_relations_never_reach_the_polls_hook(residents, bots):
    """§4: a poll response or end whose m.relates_to.event_id is a list or a dict raised
    TypeError in the polls hook, and the bot apologised to a non-command; anyone could repeat
    it."""
    ann, eve = await residents("ann"), await residents("eve")
    bot = await bots()
    room = await room_with_bot(ann, bot, eve)
    ann.mark()
    await ann.send_text(room, "!poll Bins on Monday? | yes | no")
    start = await ann.wait_for(room, lambda e: e["type"] == "org.matrix.msc3381.poll.start")
    eve.mark()
    for bad in (["$x"], {"$x": 1}, 7, None):
        relation = {"rel_type": "m.reference", "event_id": bad}
        for kind, body in (
            (
                "org.matrix.msc3381.poll.response",
                {
                    "answers": [
                        start["content"]["org.matrix.msc3381.poll.start"]["answers"][0]["id"]
                    ]
                },
            ),
            ("org.matrix.msc3381.poll.end", {}),
        ):
            await eve.send_event(room, kind, {"m.relates_to": relation, kind: body})
        await eve.send_event(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": "hi", "m.relates_to": {"m.in_reply_to": bad}},
        )
    said = await settle(eve, room, bot)
    assert said == [], [e["content"].get("body") for e in said]
    assert "Traceback" not in bot.log_text()
    shown = await ask(ann, room, "!poll show P-1", bot)
    assert "P-1 (open)" in shown["content"]["body"]


# -- §4: role grants -------------------------------------------------------------------------
async def test_roles_go_only_to_valid_ids_of_room_members(residents, bots):
    """`!role grant` accepted a 50 kB user id for an account that doesn't exist."""
    mod, ann, outsider = await residents("mod"), await residents("ann"), await residents("out")
    bot = await bots()
    room = await room_with_bot(mod, bot, ann)
    huge = "@" + "a" * 50_000 + ":localhost"
    reply = (await ask(mod, room, f"!role grant {huge} moderator", bot))["content"]["body"]
    assert "at most 255" in reply and len(reply) < 400
    for nobody in ("@ghost-never-registered:localhost", outsider.user_id):
        reply = (await ask(mod, room, f"!role grant {nobody} moderator", bot))["content"]["body"]
        assert "isn't a member of this room" in reply
    await mod.invite(room, outsider.user_id)  # invited is not enough: joined
    reply = (await ask(mod, room, f"!role grant {outsider.user_id} moderator", bot))["content"]
    assert "isn't a member of this room" in reply["body"]
    reply = (await ask(mod, room, f"!role grant {ann.user_id} moderator", bot))["content"]
    assert reply["body"].startswith("Granted the moderator role")
    roles = (await ask(mod, room, "!roles", bot))["content"]["body"]
    assert ann.user_id in roles and "ghost" not in roles and "aaaa" not in roles
