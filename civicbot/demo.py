"""``civicbot demo``: a private Synapse on loopback, a bot, a resident and a room to try it in.

The integration tests provision their homeserver with these same functions.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from civicbot.config import Settings
from civicbot.secretkey import SecretKeyError
from civicbot.testing.synapse import LocalSynapse, SynapseNotInstalled, ensure_synapse_installed


@dataclass
class DemoAccounts:
    bot_id: str
    bot_password: str
    resident_id: str
    resident_password: str
    room_id: str = ""


def provision(
    synapse: LocalSynapse,
    state_file: Path | None = None,
    bot: str = "civicbot",
    resident: str = "resident",
) -> DemoAccounts:
    """Register the bot and a resident (passwords kept in ``state_file`` across runs)."""
    if state_file and state_file.exists():
        saved = DemoAccounts(**json.loads(state_file.read_text()))
    else:
        saved = DemoAccounts("", secrets.token_urlsafe(12), "", secrets.token_urlsafe(9))
    saved.bot_id = synapse.register(bot, saved.bot_password)
    saved.resident_id = synapse.register(resident, saved.resident_password)
    if state_file:
        state_file.write_text(json.dumps(asdict(saved)))
    return saved


def bot_settings(
    synapse: LocalSynapse, accounts: DemoAccounts, data_dir: Path, **bot: object
) -> Settings:
    """Settings for a bot that logs in to the local homeserver."""
    return Settings.model_validate(
        {
            "matrix": {
                "homeserver": synapse.url,
                "user_id": accounts.bot_id,
                "password": accounts.bot_password,
                "device_name": "civicbot-demo",
            },
            "bot": {"data_dir": data_dir, **bot},
        }
    )


async def create_demo_room(synapse: LocalSynapse, accounts: DemoAccounts) -> str:
    """The resident creates a room and invites the bot (as a moderator would)."""
    from civicbot.testing.client import Resident

    async with await Resident.login(
        synapse.url, accounts.resident_id, accounts.resident_password
    ) as resident:
        if accounts.room_id and accounts.room_id in await _joined_rooms(resident):
            return accounts.room_id
        return await resident.create_room(name="civicbot demo", invite=[accounts.bot_id])


async def _joined_rooms(resident: object) -> list[str]:
    try:
        data = await resident._request("GET", "/_matrix/client/v3/joined_rooms")  # type: ignore[attr-defined]
    except Exception:
        return []
    return list(data.get("joined_rooms", []))


def run_demo(directory: Path, port: int = 8448) -> int:
    """Start everything, print how to connect, run until Ctrl-C."""
    from civicbot.dates import warm_up
    from civicbot.logs import setup_logging
    from civicbot.runtime import run_bot

    try:
        ensure_synapse_installed()
    except SynapseNotInstalled as exc:
        print(f"civicbot demo: {exc}", file=sys.stderr)
        return 1
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    synapse = LocalSynapse(directory / "synapse", port=port)
    print(f"Starting a private Synapse homeserver on {synapse.url} …", flush=True)
    synapse.start()
    try:
        state_file = directory / "accounts.json"
        accounts = provision(synapse, state_file)
        accounts.room_id = asyncio.run(create_demo_room(synapse, accounts))
        state_file.write_text(json.dumps(asdict(accounts)))
        settings = bot_settings(synapse, accounts, directory / "bot")
        print(_banner(synapse, accounts), flush=True)
        setup_logging(settings.bot.log_level)
        warm_up(settings.bot.languages)
        asyncio.run(run_bot(settings))
    except SecretKeyError as exc:
        print(f"civicbot demo: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        synapse.stop()
    return 0


def _banner(synapse: LocalSynapse, accounts: DemoAccounts) -> str:
    return f"""
civicbot demo is running.

  Homeserver:  {synapse.url}
  Log in as:   {accounts.resident_id}
  Password:    {accounts.resident_password}
  Room:        "civicbot demo" ({accounts.room_id})

Connect any Matrix client (Element Web/Desktop: "Edit" the homeserver and enter the URL above),
open the room and type !help. Press Ctrl-C to stop; state is kept in {synapse.base_dir.parent}.
"""
