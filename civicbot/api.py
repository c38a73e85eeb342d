"""The one module a plugin imports from: civicbot's public face.

    from civicbot.api import Context, Plugin, PluginConfig, Role, command

Everything a plugin may use is named here, typed, and kept stable across releases; every other
module under ``civicbot`` is internal and may move (as discord.py plugins import
``discord.ext.commands`` and nothing deeper). A test (``tests/unit/test_api_boundary.py``)
fails if a built-in plugin or the example plugin imports anything else from the engine.

The names fall into groups, in the order a plugin author meets them:

* the plugin and its settings: :class:`Plugin`, :class:`PluginConfig`, :func:`on`, the hook
  results :class:`DigestSection` and :class:`ForgetReport`;
* commands: :func:`command`, the converters (:class:`Rest`, :class:`Lines`, :class:`UserId`,
  :class:`ItemId`, your own :class:`Converter`), and the errors people read
  (:class:`UsageError`, :class:`CommandError`);
* what a handler or job is given: :class:`Context`, :class:`JobContext`, :class:`PluginContext`,
  :class:`Event`, :class:`Message`, :class:`Rendered`, :class:`Role`;
* storage: :class:`Database`, :class:`Migration`, and for anything secret or anonymous
  :class:`PrivateStore` (``ctx.private_store``) and :func:`coarse_time`;
* posts about an item kept true (``ctx.posts``, see :mod:`civicbot.core.posts`): send with
  ``item=…`` and ``await ctx.refresh(item, content)`` edits every post of that item in place;
  :class:`PluginPosts`, :class:`ItemPost`;
* effects a plugin promises and the engine keeps exactly once (``ctx.effects``, see
  :mod:`civicbot.core.effects`): :class:`Say`, :class:`DirectMessage`, :class:`DirectFile`,
  :class:`NewRoom` with its :class:`RoomNotice`, and :class:`Composed` (made when carried
  out, or :class:`NotYet` from its composer); any of them may be promised with ``expires=``
  (given up once its moment passes);
* helpers for what residents type and read: dates (``on_the_minute`` for times agreed on),
  time zone names (``zone_name``, whatever their case), text cleaning, choices
  (``read_choices``: by option text, number or letter; ``yes_or_no`` with a "please"),
  ``matrix.to`` links, log pseudonyms;
* a few names for the built-in plugins that run rooms (``manages_rooms = True``: the admin
  plugin) and for advanced plugins; they are public too, but most plugins never need them.
"""

from __future__ import annotations

from civicbot import failpoints
from civicbot.core.botinfo import CommandInfo, PluginInfo
from civicbot.core.commands import command
from civicbot.core.context import (
    Context,
    JobContext,
    PluginContext,
    RoleCheck,
    RoomManagement,
    send_notice,
)
from civicbot.core.converters import (
    CommandError,
    Converter,
    ItemId,
    Lines,
    Number,
    Rest,
    UsageError,
    UserId,
    whole_number,
)
from civicbot.core.dates import (
    DateError,
    describe_delta,
    format_when,
    on_the_minute,
    parse_duration,
    parse_when,
    resolve_when,
    same_minute_or_later,
)
from civicbot.core.effects import (
    Composed,
    DirectFile,
    DirectMessage,
    Effect,
    NewRoom,
    NotYet,
    PluginEffects,
    RoomNotice,
    Say,
)
from civicbot.core.events import (
    POLL_DISCLOSED,
    POLL_END_TYPE,
    POLL_START_TYPE,
    POLL_TEXT_KEY,
    POLL_UNDISCLOSED,
    Event,
    EventKind,
    Message,
    matrix_to,
    notice_edit,
    notice_replacement,
    poll_end_content,
    poll_response_answers,
)
from civicbot.core.outgoing import Outgoing
from civicbot.core.plugin import DigestSection, ForgetReport, Plugin, observe, on
from civicbot.core.posts import ItemPost, PluginPosts
from civicbot.core.public import (
    PublicConsultation,
    PublicCount,
    PublicDecision,
    PublicError,
    PublicMeeting,
    PublicPages,
    PublicPost,
    PublicSection,
    PublicUpdate,
)
from civicbot.core.templates import Rendered, TemplateCheckError, Templates
from civicbot.core.text import (
    ChoiceError,
    clean_text,
    comparison_key,
    list_choices,
    pick_people,
    read_choices,
    yes_or_no,
)
from civicbot.logs import privacy_filter, private
from civicbot.policy.limits import SendPacer
from civicbot.policy.permissions import restrict_mentions, role_satisfied
from civicbot.policy.plugin_config import (
    LIMITS,
    OPERATOR,
    OPERATOR_ONLY,
    ROOM,
    WEB,
    PluginConfig,
    RoomConfig,
    is_operator_only,
    zone_name,
)
from civicbot.policy.roles import Role
from civicbot.policy.room_settings import (
    SettingError,
    describe_field,
    describe_type,
    format_value,
    parse_setting_value,
)
from civicbot.scheduling.clock import ms
from civicbot.storage.core_stores import FORGOTTEN, AuditEntry, PersonRecords
from civicbot.storage.database import Database, Migration, rewrite_in_key_order
from civicbot.storage.private_store import ALREADY as ALREADY_TOOK_PART
from civicbot.storage.private_store import SAME as SAME_CONTRIBUTION
from civicbot.storage.private_store import TAKEN as TOOK_PART
from civicbot.storage.private_store import (
    Lost,
    PrivateStore,
    PrivateStoreBusy,
    coarse_time,
)
from civicbot.transport import TransportError

__all__ = [
    "ALREADY_TOOK_PART",
    "FORGOTTEN",
    "LIMITS",
    "OPERATOR",
    "OPERATOR_ONLY",
    "POLL_DISCLOSED",
    "POLL_END_TYPE",
    "POLL_START_TYPE",
    "POLL_TEXT_KEY",
    "POLL_UNDISCLOSED",
    "ROOM",
    "SAME_CONTRIBUTION",
    "TOOK_PART",
    "WEB",
    "AuditEntry",
    "ChoiceError",
    "CommandError",
    "CommandInfo",
    "Composed",
    "Context",
    "Converter",
    "Database",
    "DateError",
    "DigestSection",
    "DirectFile",
    "DirectMessage",
    "Effect",
    "Event",
    "EventKind",
    "ForgetReport",
    "ItemId",
    "ItemPost",
    "JobContext",
    "Lines",
    "Lost",
    "Message",
    "Migration",
    "NewRoom",
    "NotYet",
    "Number",
    "Outgoing",
    "PersonRecords",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginEffects",
    "PluginInfo",
    "PluginPosts",
    "PrivateStore",
    "PrivateStoreBusy",
    "PublicConsultation",
    "PublicCount",
    "PublicDecision",
    "PublicError",
    "PublicMeeting",
    "PublicPages",
    "PublicPost",
    "PublicSection",
    "PublicUpdate",
    "Rendered",
    "Rest",
    "Role",
    "RoleCheck",
    "RoomConfig",
    "RoomManagement",
    "RoomNotice",
    "Say",
    "SendPacer",
    "SettingError",
    "TemplateCheckError",
    "Templates",
    "TransportError",
    "UsageError",
    "UserId",
    "clean_text",
    "coarse_time",
    "command",
    "comparison_key",
    "describe_delta",
    "describe_field",
    "describe_type",
    "failpoints",
    "format_value",
    "format_when",
    "is_operator_only",
    "list_choices",
    "matrix_to",
    "ms",
    "notice_edit",
    "notice_replacement",
    "observe",
    "on",
    "on_the_minute",
    "parse_duration",
    "parse_setting_value",
    "parse_when",
    "pick_people",
    "poll_end_content",
    "poll_response_answers",
    "privacy_filter",
    "private",
    "read_choices",
    "resolve_when",
    "restrict_mentions",
    "rewrite_in_key_order",
    "role_satisfied",
    "same_minute_or_later",
    "send_notice",
    "whole_number",
    "yes_or_no",
    "zone_name",
]
