"""``civicbot demo``: a private Synapse on loopback, a bot, residents and a room to try it in.

The first resident creates the room (so is its moderator, as a room creator); the others are
ordinary neighbours, so a person can try votes, roles and refusals from more than one account.
The integration tests provision their homeserver with these same functions.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from civicbot.config import Settings
from civicbot.storage.data_lock import DataDirInUse, DataDirLock, DataDirUnusable
from civicbot.storage.secret_key import SecretKeyError
from civicbot.testing.synapse import (
    LocalSynapse,
    SynapseNotInstalled,
    SynapseStartupError,
    ensure_synapse_installed,
    port_taken,
)
from civicbot.web.server import WebListenError

ROOM_NAME = "civicbot demo"
ROOM_TOPIC = "Try civicbot here: type !help"
MAX_RESIDENTS = 10


@dataclass
class DemoAccounts:
    bot_id: str
    bot_password: str
    resident_id: str
    resident_password: str
    room_id: str = ""
    # Residents after the first, as {"user_id": ..., "password": ...}.
    neighbours: list[dict[str, str]] = field(default_factory=list)

    def residents(self) -> list[tuple[str, str]]:
        """Every resident's (user id, password), the room's creator first."""
        others = [(n["user_id"], n["password"]) for n in self.neighbours]
        return [(self.resident_id, self.resident_password), *others]


def provision(
    synapse: LocalSynapse,
    state_file: Path | None = None,
    bot: str = "civicbot",
    resident: str = "resident",
    residents: int = 1,
) -> DemoAccounts:
    """Register the bot and ``residents`` residents (``resident``, ``resident2``, …), with
    passwords kept in ``state_file`` across runs; a later run may ask for more."""
    if state_file and state_file.exists():
        saved = DemoAccounts(**json.loads(state_file.read_text()))
    else:
        saved = DemoAccounts("", secrets.token_urlsafe(12), "", secrets.token_urlsafe(9))
    saved.bot_id = synapse.register(bot, saved.bot_password)
    saved.resident_id = synapse.register(resident, saved.resident_password)
    while len(saved.neighbours) + 1 < residents:
        saved.neighbours.append({"user_id": "", "password": secrets.token_urlsafe(9)})
    for number, neighbour in enumerate(saved.neighbours, start=2):
        neighbour["user_id"] = synapse.register(f"{resident}{number}", neighbour["password"])
    if state_file:
        state_file.write_text(json.dumps(asdict(saved)))
    return saved


def bot_settings(
    synapse: LocalSynapse,
    accounts: DemoAccounts,
    data_dir: Path,
    web_port: int | None = None,
    **bot: object,
) -> Settings:
    """Settings for a bot that logs in to the local homeserver (serving the public pages on
    ``web_port``, on loopback, when given)."""
    web = {"listen": f"127.0.0.1:{web_port}", "public_url": web_url(web_port)} if web_port else {}
    return Settings.model_validate(
        {
            "web": web,
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
    """The first resident creates a named group room and invites the bot and every other
    resident, who join (as a moderator and neighbours would). Reused on later runs."""
    from civicbot.testing.client import Resident

    (first_id, first_password), *others = accounts.residents()
    async with await Resident.login(synapse.url, first_id, first_password) as creator:
        room = accounts.room_id
        if not room or room not in await _joined_rooms(creator):
            room = await creator.create_room(name=ROOM_NAME, invite=[accounts.bot_id])
            await creator.send_state(room, "m.room.topic", {"topic": ROOM_TOPIC})
        members = set(await creator.joined_members(room))
        for user_id, password in others:
            if user_id in members:
                continue
            await creator.invite(room, user_id)
            async with await Resident.login(synapse.url, user_id, password) as neighbour:
                await neighbour.join(room)
        return room


async def _joined_rooms(resident: object) -> list[str]:
    try:
        data = await resident._request("GET", "/_matrix/client/v3/joined_rooms")  # type: ignore[attr-defined]
    except Exception:
        return []
    return list(data.get("joined_rooms", []))


def web_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def run_demo(directory: Path, port: int = 8448, residents: int = 2, web_port: int = 8090) -> int:
    """Start everything, print how to connect, run until Ctrl-C."""
    try:
        ensure_synapse_installed()
    except SynapseNotInstalled as exc:
        print(f"civicbot demo: {exc}", file=sys.stderr)
        return 1
    directory = directory.resolve()
    # One demo per folder for its whole life (its homeserver and its bot both live there), and
    # no bot already running on the demo's bot folder: said before anything starts. The lock
    # makes the folder, or says why it cannot.
    demo_lock = DataDirLock(directory)
    try:
        demo_lock.acquire()
        DataDirLock(directory / "bot").acquire_and_release()
    except DataDirInUse as exc:
        demo_lock.release()
        return _in_use(directory, exc)
    except DataDirUnusable as exc:
        demo_lock.release()
        return _unusable(directory, exc)
    try:
        return _run_in(directory, port, residents, web_port)
    finally:
        demo_lock.release()


def _run_in(directory: Path, port: int, residents: int, web_port: int) -> int:
    """The demo in ``directory``, whose lock the caller holds."""
    from civicbot.app.runtime import run_bot
    from civicbot.core.dates import use_languages
    from civicbot.logs import setup_logging

    taken = [f"{port} (the homeserver)"] if port_taken(port) else []
    taken += [f"{web_port} (the public pages)"] if web_port and port_taken(web_port) else []
    if taken:
        ports = f"port {taken[0]} is" if len(taken) == 1 else f"ports {' and '.join(taken)} are"
        print(
            f"civicbot demo: {ports} in use on 127.0.0.1 (another demo?). To run one beside "
            "it: civicbot demo --dir DIR --port N --web-port M",
            file=sys.stderr,
        )
        return 1
    synapse = LocalSynapse(directory / "synapse", port=port)
    print(f"Starting a private Synapse homeserver on {synapse.url} …", flush=True)
    try:
        synapse.start()
    except KeyboardInterrupt:  # Ctrl-C while it starts: it is stopped, nothing else ran
        synapse.stop()
        return 0
    except SynapseStartupError as exc:
        first = str(exc).splitlines()[0]
        log = f"\n  Its log: {synapse.log_path}" if synapse.log_path.exists() else ""
        print(
            f"civicbot demo: the homeserver did not start: {first}{log}",
            file=sys.stderr,
        )
        return 1
    try:
        state_file = directory / "accounts.json"
        accounts = provision(synapse, state_file, residents=residents)
        accounts.room_id = asyncio.run(create_demo_room(synapse, accounts))
        state_file.write_text(json.dumps(asdict(accounts)))
        settings = bot_settings(synapse, accounts, directory / "bot", web_port=web_port)
        print(_banner(synapse, accounts, web_url(web_port)), flush=True)
        setup_logging(settings.bot.log_level)
        use_languages(settings.bot.languages)
        asyncio.run(run_bot(settings))
    except SecretKeyError as exc:
        print(f"civicbot demo: cannot start: {exc}", file=sys.stderr)
        return 1
    except DataDirInUse as exc:  # started between the check above and now
        return _in_use(directory, exc)
    except DataDirUnusable as exc:  # broken between the check above and now
        return _unusable(directory, exc)
    except WebListenError as exc:  # taken between the check above and now
        print(f"civicbot demo: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        synapse.stop()
    return 0


def _in_use(directory: Path, exc: DataDirInUse) -> int:
    holder = f" (pid {exc.pid})" if exc.pid else ""
    print(
        f"civicbot demo: another civicbot is running on {directory}{holder}. Stop it first "
        "(Ctrl-C where it runs), or run one beside it: civicbot demo --dir DIR --port N "
        "--web-port M",
        file=sys.stderr,
    )
    return 1


def _unusable(directory: Path, exc: DataDirUnusable) -> int:
    print(
        f"civicbot demo: cannot keep the demo in {directory}: {exc.reason}. "
        "Give it another folder: civicbot demo --dir DIR",
        file=sys.stderr,
    )
    return 1


def _banner(synapse: LocalSynapse, accounts: DemoAccounts, web: str) -> str:
    logins = []
    for number, (user_id, password) in enumerate(accounts.residents(), start=1):
        role = "  (created the room: a moderator)" if number == 1 else ""
        logins.append(f"  Resident {number}:  {user_id}  password: {password}{role}")
    shown = "\n".join(logins)
    return f"""
civicbot demo is running.

  Homeserver:  {synapse.url}
  Room:        "{ROOM_NAME}" ({accounts.room_id})
{shown}
  Public pages: {web}  (the moderator publishes the room with !config web.public true;
                then !web gives its page, calendar feed and printable noticeboard)

Connect any Matrix client (Element Web/Desktop: "Edit" the homeserver and enter the URL above),
log in as a resident, open the room and type !help. Log in as another resident in a second
client (or a private window) to vote, grant roles and be refused as a neighbour would.
Press Ctrl-C to stop; state is kept in {synapse.base_dir.parent}.
"""
