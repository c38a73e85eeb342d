"""Fuzzing the config setter: no value typed in chat crashes it or corrupts stored settings."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from civicbot.policy.plugin_config import ROOM, RoomConfig
from civicbot.policy.room_settings import RoomSettings, SettingError, parse_setting_value
from civicbot.storage.database import Database
from tests.unit.plugins.test_admin import plugin_classes

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = {name: cls.Config for name, cls in plugin_classes().items()}
DEFAULTS = {"council": {"reminder_hours": 12}}
FIELDS = [
    (plugin, key, field.annotation)
    for plugin, model in {**MODELS, ROOM: RoomConfig}.items()
    for key, field in model.model_fields.items()
]
RAW = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "48",
            "-1",
            "0",
            "1e400",
            "NaN",
            "Infinity",
            "-Infinity",
            "null",
            "none",
            "true",
            "on",
            "off",
            "[]",
            "[1, 2",
            '["a", "b"]',
            "{}",
            '{"councillor": 30}',
            '{"councillor": "x"}',
            "a, b, c",
            "Europe/London",
            "Mars/Olympus",
            '"quoted"',
            "[" * 5000,
            "9" * 5000,
            "x" * 3000,
            "long",
            "short",
            "\x00",
            "🗳️",
        ]
    ),
    st.integers().map(str),
    st.floats().map(str),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    ).map(json.dumps),
)
KEYS = st.one_of(
    st.sampled_from([(p, k) for p, k, _ in FIELDS]),
    st.tuples(st.sampled_from([*MODELS, ROOM, "nothing"]), st.text(max_size=12)),
)


@FUZZ
@given(field=st.sampled_from(FIELDS), raw=RAW)
def test_reading_a_typed_value_never_fails_unexpectedly(field, raw):
    _, _, annotation = field
    try:
        parse_setting_value(raw, annotation)
    except SettingError:
        pass


def test_no_sequence_of_changes_corrupts_the_stored_settings(tmp_path):
    runner = asyncio.Runner()
    with runner:
        db = runner.run(Database.open(tmp_path / "fuzz.sqlite3"))
        room_settings = RoomSettings(db, DEFAULTS, MODELS)
        calls: list[str] = []

        @FUZZ
        @given(key=KEYS, raw=RAW, reset=st.booleans())
        # Valid changes, always among the cases: the random ones are mostly refused (3 to 13 of
        # 200 succeed), so a run could otherwise write nothing and prove nothing about writes.
        @example(key=(ROOM, "timezone"), raw="Europe/London", reset=False)
        @example(key=(ROOM, "unknown_commands"), raw="off", reset=False)
        @example(key=(ROOM, "timezone"), raw="", reset=True)
        def change(key, raw, reset):
            plugin, name = key
            calls.append(plugin)
            annotation = None
            model = room_settings.models.get(plugin)
            if model is not None and name in model.model_fields:
                annotation = model.model_fields[name].annotation
            try:
                if reset:
                    runner.run(room_settings.reset("!r", plugin, name, actor="@mod:hs"))
                else:
                    value = parse_setting_value(raw, annotation)
                    runner.run(room_settings.set("!r", plugin, name, value, actor="@mod:hs"))
            except SettingError:
                pass
            for each, each_model in room_settings.models.items():
                stored = runner.run(room_settings.overrides("!r", each))
                # What is stored always validates as a whole: never a fallback to defaults.
                each_model.model_validate({**DEFAULTS.get(each, {}), **stored})
                assert isinstance(runner.run(room_settings.get("!r", each)), each_model)

        try:
            change()
            audit = runner.run(db.fetchval("SELECT count(*) FROM core_audit"))
            rows = runner.run(db.fetchval("SELECT count(*) FROM core_room_settings"))
        finally:
            runner.run(db.close())
        assert len(calls) >= 200
        assert audit > 0 and rows >= 0
