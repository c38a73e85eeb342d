"""The core's own tables, written only through these stores: granted roles (``core_roles``), the
audit log (``core_audit``) and what they and ``core_room_settings`` hold about one person (for
``!mydata`` and ``!forget me``). Plugins reach them as ``ctx.roles`` and ``ctx.audit``; no plugin
writes a ``core_`` table with its own SQL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from civicbot.policy.room_settings import write_audit
from civicbot.storage.database import Database

FORGOTTEN = "[forgotten]"  # stands in for someone who asked to be forgotten


@dataclass
class ForgetReport:
    """What a plugin removed or anonymised for ``!forget me``."""

    removed: int = 0
    anonymised: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    detail: str
    at: datetime


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso_utc(seconds: float) -> str:
    return utc(seconds).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Grant:
    room_id: str
    user_id: str
    role: str
    granted_by: str
    granted_at: datetime


def mentions_of(user_id: str) -> re.Pattern[str]:
    """``user_id`` as a whole id: ``@ann:hs`` must not match inside ``@ann:hs.example``."""
    return re.compile(re.escape(user_id) + r"(?![A-Za-z0-9.\-:\[\]])")


class RoleStore:
    """Roles granted to people room by room, every change audited in the same transaction."""

    def __init__(self, db: Database):
        self.db = db

    async def grants(self, room_id: str) -> list[Grant]:
        rows = await self.db.fetchall(
            "SELECT room_id, user_id, role, granted_by, granted_at FROM core_roles"
            " WHERE room_id = ? ORDER BY role, user_id",
            (room_id,),
        )
        return [
            Grant(r["room_id"], r["user_id"], r["role"], r["granted_by"], utc(r["granted_at"]))
            for r in rows
        ]

    async def grant(self, room_id: str, user_id: str, role: str, actor: str, at: int) -> bool:
        """Give ``role``; False when ``user_id`` already had it."""
        async with self.db.transaction():
            added = await self.db.execute_rowcount(
                "INSERT OR IGNORE INTO core_roles (room_id, user_id, role, granted_by, granted_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (room_id, user_id, role, actor, at),
            )
            if added:
                await write_audit(self.db, room_id, actor, "role.grant", f"{role} to {user_id}", at)
        return bool(added)

    async def revoke(self, room_id: str, user_id: str, role: str, actor: str, at: int) -> bool:
        """Take ``role`` back; False when ``user_id`` did not have it."""
        async with self.db.transaction():
            removed = await self.db.execute_rowcount(
                "DELETE FROM core_roles WHERE room_id = ? AND user_id = ? AND role = ?",
                (room_id, user_id, role),
            )
            if removed:
                detail = f"{role} from {user_id}"
                await write_audit(self.db, room_id, actor, "role.revoke", detail, at)
        return bool(removed)


class AuditLog:
    """Who changed what in a room. Settings and roles write it themselves; plugins may add
    entries of their own (``write``)."""

    def __init__(self, db: Database):
        self.db = db

    async def write(self, room_id: str, actor: str, action: str, detail: str, at: int) -> None:
        await write_audit(self.db, room_id, actor, action, detail, at)

    async def recent(self, room_id: str, limit: int) -> list[AuditEntry]:
        rows = await self.db.fetchall(
            "SELECT actor, action, detail, at FROM core_audit WHERE room_id = ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (room_id, limit),
        )
        return [AuditEntry(r["actor"], r["action"], r["detail"], utc(r["at"])) for r in rows]


class PersonRecords:
    """What the core tables hold about one person, for ``!mydata`` and ``!forget me``."""

    def __init__(self, db: Database):
        self.db = db

    async def export(self, user_id: str) -> dict[str, Any] | None:
        held = await self.db.fetchall(
            "SELECT room_id, role, granted_by, granted_at FROM core_roles WHERE user_id = ?",
            (user_id,),
        )
        given = await self.db.fetchall(
            "SELECT room_id, user_id, role, granted_at FROM core_roles WHERE granted_by = ?",
            (user_id,),
        )
        settings = await self.db.fetchall(
            "SELECT room_id, plugin, key, value, changed_at FROM core_room_settings"
            " WHERE changed_by = ?",
            (user_id,),
        )
        audit = await self._audit_about(user_id)
        data = {
            "roles_you_hold": [
                {
                    "room": r["room_id"],
                    "role": r["role"],
                    "granted_by": r["granted_by"],
                    "granted_at": iso_utc(r["granted_at"]),
                }
                for r in held
            ],
            "roles_you_granted": [
                {
                    "room": r["room_id"],
                    "to": r["user_id"],
                    "role": r["role"],
                    "granted_at": iso_utc(r["granted_at"]),
                }
                for r in given
            ],
            "settings_you_changed": [
                {
                    "room": r["room_id"],
                    "setting": f"{r['plugin']}.{r['key']}",
                    "value": _loads(r["value"]),
                    "changed_at": iso_utc(r["changed_at"]),
                }
                for r in settings
            ],
            "audit_log_entries": [
                {
                    "room": r["room_id"],
                    "at": iso_utc(r["at"]),
                    "by": r["actor"],
                    "action": r["action"],
                    "detail": r["detail"],
                }
                for r in audit
            ],
        }
        return data if any(data.values()) else None

    async def _audit_about(self, user_id: str) -> list[Any]:
        rows = await self.db.fetchall(
            "SELECT id, room_id, actor, action, detail, at FROM core_audit"
            " WHERE actor = ? OR instr(detail, ?) > 0 ORDER BY at, id",
            (user_id, user_id),
        )
        pattern = mentions_of(user_id)
        return [r for r in rows if r["actor"] == user_id or pattern.search(r["detail"])]

    async def forget(self, user_id: str) -> ForgetReport:
        """Remove the person's roles; keep the record of every change they made or that
        concerned them, with their id replaced by :data:`FORGOTTEN`."""
        report = ForgetReport()
        pattern = mentions_of(user_id)
        async with self.db.transaction():
            roles = await self.db.execute_rowcount(
                "DELETE FROM core_roles WHERE user_id = ?", (user_id,)
            )
            if roles:
                report.removed += roles
                report.notes.append(f"{roles} role{'s' if roles != 1 else ''} you held")
            report.anonymised += await self.db.execute_rowcount(
                "UPDATE core_roles SET granted_by = ? WHERE granted_by = ?", (FORGOTTEN, user_id)
            )
            settings = await self.db.execute_rowcount(
                "UPDATE core_room_settings SET changed_by = ? WHERE changed_by = ?",
                (FORGOTTEN, user_id),
            )
            report.anonymised += settings
            report.anonymised += await self._scrub_setting_values(user_id, pattern)
            entries = await self._audit_about(user_id)
            for row in entries:
                actor = FORGOTTEN if row["actor"] == user_id else row["actor"]
                detail = pattern.sub(FORGOTTEN, row["detail"])
                await self.db.execute(
                    "UPDATE core_audit SET actor = ?, detail = ? WHERE id = ?",
                    (actor, detail, row["id"]),
                )
            report.anonymised += len(entries)
            if settings or entries:
                report.notes.append(
                    f"{settings + len(entries)} record(s) of room settings and role changes now "
                    "say 'someone who asked to be forgotten'"
                )
        return report

    async def _scrub_setting_values(self, user_id: str, pattern: re.Pattern[str]) -> int:
        """A room setting whose value names the person (a list of people, say) loses them."""
        rows = await self.db.fetchall(
            "SELECT room_id, plugin, key, value FROM core_room_settings WHERE instr(value, ?) > 0",
            (user_id,),
        )
        changed = 0
        for row in rows:
            value = _without(_loads(row["value"]), user_id)
            text = json.dumps(value)
            if pattern.search(text):
                text = pattern.sub(FORGOTTEN, text)
            where = (row["room_id"], row["plugin"], row["key"])
            if value is None:
                await self.db.execute(
                    "DELETE FROM core_room_settings WHERE room_id = ? AND plugin = ? AND key = ?",
                    where,
                )
            else:
                await self.db.execute(
                    "UPDATE core_room_settings SET value = ?"
                    " WHERE room_id = ? AND plugin = ? AND key = ?",
                    (text, *where),
                )
            changed += 1
        return changed


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _without(value: Any, user_id: str) -> Any:
    """``value`` with ``user_id`` taken out of lists and dict keys; None if it *was* the id."""
    if value == user_id:
        return None
    if isinstance(value, list):
        return [_without(v, user_id) for v in value if v != user_id]
    if isinstance(value, dict):
        return {k: _without(v, user_id) for k, v in value.items() if k != user_id}
    return value
