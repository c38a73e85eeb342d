"""How the core runs a handler: errors become replies people can read, and never escape.

``UsageError`` answers with the message and the generated usage, ``CommandError`` with its
message; anything else is logged with its traceback and answered with one short apology (never a
traceback in a room), and the bot carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from civicbot.core.commands import Command, CommandError, UsageError
from civicbot.core.context import Context
from civicbot.transport import TransportError

log = logging.getLogger("civicbot.core.bot")

APOLOGY = "Sorry, something went wrong while handling that. It has been logged; please try again."
# Longer than the transport's deadline for one send through an outage (SEND_DEADLINE_S, 600 s):
# a handler is never cancelled half-way while its send is still being retried.
HANDLER_TIMEOUT = 900.0


def usage_text(command: Command, error: UsageError, prefix: str) -> str:
    """What was wrong (if known), the usage line, the examples and where to read more."""
    message = error.message
    lines = [message + "." if message and not message.endswith(".") else message]
    lines.append(f"Usage: {command.usage(prefix)}")
    if command.examples:
        lines.append("For example: " + "  ".join(command.examples))
    lines.append(f"({prefix}help {command.name} explains more.)")
    return "\n".join(line for line in lines if line)


async def guarded(
    ctx: Context[Any],
    work: Awaitable[Any],
    what: str,
    command: Command | None = None,
    apologise: bool = True,
    explain: Callable[[Exception], str | None] | None = None,
) -> None:
    """Run a handler; turn errors into readable replies and never let them escape.

    ``explain`` is the plugin's :meth:`~civicbot.core.plugin.Plugin.command_error`: an error it
    recognises is answered with the message it gives, like a ``CommandError``. Hooks on events
    that are not commands (``apologise=False``) never post the apology: nobody asked the bot
    anything, and any member could repeat the event."""
    try:
        # A timer, not a task per handler (asyncio.wait_for makes one): the hot path of every
        # hooked event goes through here.
        async with asyncio.timeout(HANDLER_TIMEOUT):
            await work
    except UsageError as exc:
        if command is not None:
            await quietly(ctx.reply(usage_text(command, exc, ctx.prefix)))
    except CommandError as exc:
        await quietly(ctx.reply(exc.message))
    except TransportError as exc:
        if exc.refused:  # an answer, not an outage: a 403 in a room it may not write in
            log.warning("%s was refused by the homeserver (%s): %s", what, exc.errcode, exc)
        else:
            log.error("%s could not reach the homeserver: %s", what, exc)
    except Exception as exc:
        message = _explained(explain, exc) if apologise else None
        if message:
            await quietly(ctx.reply(message))
            return
        log.exception("%s failed on %s in %s", what, ctx.event.event_id, ctx.room_id)
        if apologise:
            await quietly(ctx.reply(APOLOGY))


def _explained(explain: Callable[[Exception], str | None] | None, error: Exception) -> str | None:
    if explain is None:
        return None
    try:
        return explain(error)
    except Exception:
        log.exception("a plugin's command_error failed on %r", error)
        return None


async def quietly(work: Awaitable[Any]) -> None:
    """Await ``work``, logging (not raising) any failure: for replies about failures."""
    try:
        await work
    except Exception:
        log.exception("ignored failure")
