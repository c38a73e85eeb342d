"""``civicbot run | check-config | backup | restore | keys | demo``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

from civicbot import __version__
from civicbot.config import ConfigError, Settings, load_settings
from civicbot.core.dates import use_languages
from civicbot.logs import setup_logging

EXIT_BAD_CONFIG = 2


def _load(path: str | None) -> Settings:
    """The settings, with every plugin table checked too; every problem in one ConfigError."""
    from civicbot.core.loader import discover_all, split_problems, validate_plugin_config

    settings: Settings | None = None
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        if exc.raw is None:
            raise
        # Go on with the plugin tables as read, so one run reports every section's mistakes.
        problems, plugins = exc.problems, exc.raw["plugins"]
        extra = exc.raw["bot"].get("extra_plugins", [])
        if not (isinstance(extra, list) and all(isinstance(item, str) for item in extra)):
            extra = []
    else:
        problems, plugins, extra = [], settings.plugins, settings.bot.extra_plugins
    classes, broken = discover_all(extra)
    fatal, optional = split_problems(broken, plugins)
    problems += [problem.why for problem in fatal]
    problems += validate_plugin_config(classes, plugins, broken={p.name for p in broken})
    for problem in optional:
        print(
            f"civicbot: warning: {problem.why} (plugins.{problem.name}.required is false: "
            "the bot will start without it)",
            file=sys.stderr,
        )
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _check_encryption(settings: Settings) -> None:
    """Encryption on needs matrix-nio's e2e extra installed: said before a start, not after."""
    from civicbot.transport.crypto import e2e_problem

    problem = e2e_problem() if settings.matrix.encryption else None
    if problem:
        raise ConfigError([f"matrix.encryption: {problem}"])


def _check_login(settings: Settings) -> None:
    """A bot with a homeserver must be able to log in: a password or an access token, or the
    session an earlier login left in bot.data_dir (the password is then no longer needed)."""
    from civicbot.storage.secret_key import SESSION_FILE

    matrix = settings.matrix
    if not settings.has_homeserver or (settings.bot.data_dir / SESSION_FILE).exists():
        return
    if matrix.password.get_secret_value() or matrix.access_token.get_secret_value():
        return
    raise ConfigError(
        [
            "matrix.password: neither a password nor an access token is set, and "
            f"{settings.bot.data_dir} holds no login session, so the bot could not log in. Set "
            "matrix.password (or CIVICBOT_MATRIX__PASSWORD in the environment) or "
            "matrix.access_token."
        ]
    )


def _report(exc: ConfigError, path: str | None) -> int:
    print(
        f"civicbot: the configuration{f' in {path}' if path else ''} is not valid:", file=sys.stderr
    )
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = _load(args.config)
        _check_encryption(settings)
        _check_login(settings)
    except ConfigError as exc:
        return _report(exc, args.config)
    print(f"{args.config}: OK")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from civicbot.app.runtime import run_bot
    from civicbot.core.loader import PluginLoadError
    from civicbot.storage.data_lock import DataDirInUse, DataDirUnusable
    from civicbot.storage.secret_key import SecretKeyError
    from civicbot.transport import TransportError
    from civicbot.web.server import WebListenError

    config_path: str | None = args.config
    if not Path(args.config).exists():
        if not os.environ.get("CIVICBOT_MATRIX__HOMESERVER"):
            print(
                f"No {args.config} and no homeserver configured: starting the demo on a private "
                "local homeserver. Copy config.example.toml to config.toml to use your own.",
                flush=True,
            )
            return run_demo_default()
        config_path = None  # configured entirely from CIVICBOT_* variables (e.g. in a container)
    try:
        settings = _load(config_path)
        _check_encryption(settings)
    except ConfigError as exc:
        return _report(exc, args.config)
    if not settings.has_homeserver:
        print(
            "civicbot: set matrix.homeserver and matrix.user_id (or run `civicbot demo` to try "
            "it against a private local homeserver)",
            file=sys.stderr,
        )
        return EXIT_BAD_CONFIG
    setup_logging(settings.bot.log_level)
    use_languages(settings.bot.languages)  # loaded once the bot has caught up (Bot._catch_up)
    try:
        asyncio.run(run_bot(settings))
    except (
        DataDirInUse,
        DataDirUnusable,
        PluginLoadError,
        SecretKeyError,
        TransportError,
        WebListenError,
    ) as exc:
        print(f"civicbot: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


DEMO_DATA = Path("demo-data") / "bot"  # where `civicbot run` with no config keeps the demo's


def _data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else ``bot.data_dir`` from the config file (or the environment alone).
    With neither a config file nor a homeserver in the environment, ``civicbot run`` starts the
    demo: the demo's data directory is then the bot's, as long as it holds a database."""
    from civicbot.storage.secret_key import DATABASE_FILE

    if args.data_dir:
        return Path(args.data_dir)
    path: str | None = args.config if Path(args.config).exists() else None
    data_dir = load_settings(path).bot.data_dir
    configured = path or any(
        os.environ.get(f"CIVICBOT_{key}") for key in ("MATRIX__HOMESERVER", "BOT__DATA_DIR")
    )
    if not configured and not (data_dir / DATABASE_FILE).exists():
        if (DEMO_DATA / DATABASE_FILE).is_file():
            print(f"No {args.config}: using the demo's data in {DEMO_DATA}.", file=sys.stderr)
            return DEMO_DATA
    return data_dir


def cmd_backup(args: argparse.Namespace) -> int:
    from civicbot.app.backup import BackupError, backup

    try:
        data_dir = _data_dir(args)
        copied = backup(data_dir, Path(args.path))
    except ConfigError as exc:
        return _report(exc, args.config)
    except (BackupError, OSError) as exc:
        print(f"civicbot: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"Backed up {data_dir} to {args.path}: {', '.join(copied)}.")
    print("It holds the login session and secret.key: keep it as private as the bot's data.")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from civicbot.app.backup import BackupError, restore
    from civicbot.storage.data_lock import DataDirInUse, DataDirLock, DataDirUnusable

    try:
        data_dir = _data_dir(args)
        # Never under a running bot: --replace would move its live database aside.
        with DataDirLock(data_dir):
            aside = restore(Path(args.path), data_dir, replace=args.replace)
    except ConfigError as exc:
        return _report(exc, args.config)
    except DataDirInUse as exc:
        print(f"civicbot: restore failed: {exc}; stop it first", file=sys.stderr)
        return 1
    except (BackupError, OSError, DataDirUnusable) as exc:
        print(f"civicbot: restore failed: {exc}", file=sys.stderr)
        return 1
    kept = f" The files it replaced are in {aside}." if aside else ""
    print(f"Restored {args.path} into {data_dir}.{kept} Start the bot with `civicbot run`.")
    return 0


def _passphrase(args: argparse.Namespace) -> str:
    """From --passphrase-file (its first line), else asked twice for an export, once for an
    import."""
    if args.passphrase_file:
        with open(args.passphrase_file, encoding="utf-8") as handle:
            passphrase = handle.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        # getpass would read the passphrase from a pipe, or end in EOFError with nothing there.
        raise ValueError(
            "there is no terminal to ask for the passphrase: put it in a file readable only by "
            "you and give --passphrase-file FILE"
        )
    else:
        passphrase = getpass.getpass("Passphrase for the key file: ")
        if args.action == "export" and getpass.getpass("Once more: ") != passphrase:
            raise ValueError("the two passphrases differ")
    if not passphrase:
        raise ValueError("an empty passphrase would leave the keys unprotected")
    return passphrase


def cmd_keys(args: argparse.Namespace) -> int:
    """Export or import the room keys of the bot's device (Element's key file format)."""
    from civicbot.storage.secret_key import SecretKeyError
    from civicbot.transport.crypto import KeysError, transfer_room_keys

    try:
        data_dir = _data_dir(args)
        path: str | None = args.config if Path(args.config).exists() else None
        user_id = load_settings(path).matrix.user_id or _session_user(data_dir)
        passphrase = _passphrase(args)
        asyncio.run(
            transfer_room_keys(
                data_dir, user_id, Path(args.path), passphrase, export=args.action == "export"
            )
        )
    except ConfigError as exc:
        return _report(exc, args.config)
    except (KeysError, SecretKeyError, OSError, ValueError) as exc:
        print(f"civicbot: keys {args.action} failed: {exc}", file=sys.stderr)
        return 1
    if args.action == "export":
        print(f"Exported the bot's room keys to {args.path}, sealed with the passphrase.")
    else:
        print(f"Imported the room keys in {args.path}. Start the bot with `civicbot run`.")
    return 0


def _session_user(data_dir: Path) -> str:
    try:
        return str(json.loads((data_dir / "session.json").read_text())["user_id"])
    except (OSError, ValueError, KeyError):
        raise ValueError("set matrix.user_id (--config) to say whose keys these are") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from civicbot.app.demo import run_demo

    return run_demo(
        Path(args.dir), port=args.port, residents=args.residents, web_port=args.web_port
    )


def _resident_count(text: str) -> int:
    from civicbot.app.demo import MAX_RESIDENTS

    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_RESIDENTS:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to {MAX_RESIDENTS}")
    return count


def run_demo_default() -> int:
    from civicbot.app.demo import run_demo

    return run_demo(Path("./demo-data"))


def build_parser() -> argparse.ArgumentParser:
    """The command line, also used to check the commands in contrib/civicbot.service."""
    parser = argparse.ArgumentParser(
        prog="civicbot", description="A Matrix bot for neighbourhood rooms."
    )
    parser.add_argument("--version", action="version", version=f"civicbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", default="config.toml", help="path to the TOML config file")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", default="config.toml")
    check.set_defaults(func=cmd_check_config)
    for name, about in (
        ("backup", "copy the database, session and secret.key to a new directory (bot running)"),
        ("restore", "put a backup back into the data directory (bot stopped)"),
    ):
        parser_ = sub.add_parser(name, help=about)
        parser_.add_argument("path", help="the backup directory")
        parser_.add_argument("--config", default="config.toml", help="to find bot.data_dir")
        parser_.add_argument("--data-dir", help="the bot's data directory (instead of --config)")
        if name == "restore":
            parser_.add_argument(
                "--replace",
                action="store_true",
                help="replace existing data (moved aside into a replaced-… folder, not deleted)",
            )
        parser_.set_defaults(func=cmd_backup if name == "backup" else cmd_restore)
    keys = sub.add_parser(
        "keys", help="export or import the room keys of the bot's device (moving a bot)"
    )
    keys.add_argument("action", choices=("export", "import"))
    keys.add_argument("path", help="the key file (encrypted with a passphrase)")
    keys.add_argument("--passphrase-file", help="read the passphrase from this file's first line")
    keys.add_argument("--config", default="config.toml", help="to find bot.data_dir")
    keys.add_argument("--data-dir", help="the bot's data directory (instead of --config)")
    keys.set_defaults(func=cmd_keys)
    demo = sub.add_parser("demo", help="run against a private Synapse on this machine")
    demo.add_argument("--dir", default="./demo-data", help="where the demo keeps its state")
    demo.add_argument("--port", type=int, default=8448)
    demo.add_argument(
        "--web-port", type=int, default=8090, help="where the rooms' public pages are served"
    )
    demo.add_argument(
        "--residents",
        type=_resident_count,
        default=2,
        help="how many resident accounts to make (1 to 10; logins are printed)",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
