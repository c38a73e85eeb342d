from civicbot.testing.harness import BotHarness


async def test_ping_and_help(tmp_path):
    async with BotHarness.create(tmp_path) as h:
        room = h.room()
        await h.say(room, "@ann:test", "!ping")
        assert "Pong" in h.last_text(room)
        await h.say(room, "@ann:test", "!help")
        print(h.last_text(room))
        await h.say(room, "@ann:test", "!help ping")
        print(h.last_text(room))
        await h.say(room, "@ann:test", "!pnig")
        print(h.last_text(room))
