"""nio's JSON-schema checks, compiled once per schema into plain Python (fastjsonschema).

matrix-nio checks every event of every sync against a JSON schema with ``jsonschema``, building
a fresh validator each time (``nio.schemas.validate_json``), and fills in the schema's defaults
as it goes (its ``Validator`` sets them in ``properties``). Validating was 96% of reading a sync:
2.1 s of CPU for a first sync of 2,000 rooms, all of it one stall of the event loop, in which
nobody is answered. fastjsonschema turns each schema into a Python function that makes the same
checks and sets the same defaults, about five times faster; each is compiled on first use, and
an event it rejects is judged again by nio's own validator, so it is rejected and left exactly
as nio would (events are rarely rejected).

The same decisions as nio's validator, which tests/unit/test_nio_schemas.py checks event by event
(real events and thousands of broken ones): draft 4, as nio's ``Draft4Validator`` (so ``const``
means nothing, as there); nio's two formats (``user_id``, ``http_url``) checked as nio checks
them and any other format not checked, as ``jsonschema`` leaves formats it does not know. A
schema fastjsonschema cannot compile (nio's ``delete_devices`` response has a malformed one)
keeps nio's own validator.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import fastjsonschema
import nio.schemas

_DRAFT4 = "http://json-schema.org/draft-04/schema#"
_HTTP_URL = re.compile(r"^https?://.+")
# What nio's format checker accepts (nio.schemas.check_user_id, check_http_url); "room_id"
# appears in nio's schemas but is not one of its formats, so it is not checked.
_FORMATS: dict[str, Callable[[str], bool]] = {
    "user_id": lambda value: value.startswith("@") and ":" in value,
    "http_url": lambda value: _HTTP_URL.match(value) is not None,
    "room_id": lambda value: True,
}

Check = Callable[[Any], None]
_checks: dict[int, tuple[dict[str, Any], Check]] = {}
_nio_validate = nio.schemas.validate_json
# The nio modules that imported ``validate_json`` by name.
_USERS = ("nio.schemas", "nio.events.misc", "nio.responses", "nio.crypto.olm_machine")


def as_nio_reads_it(schema: Any) -> Any:
    """``schema`` rewritten so that a validator checking keywords in the usual order decides as
    nio's does. nio's validator goes through a schema's keywords in the order they are written
    and fills defaults in while it checks ``properties``: so a property with a default that is
    written before ``required`` is never missing, and a default object gets the defaults of its
    own properties (``notifications: {}`` becomes ``{"room": 50}``)."""
    if isinstance(schema, list):
        return [as_nio_reads_it(each) for each in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_nio_reads_it(value) for key, value in schema.items()}
    properties = out.get("properties")
    if isinstance(properties, dict) and all(isinstance(p, dict) for p in properties.values()):
        for sub in properties.values():
            if isinstance(sub.get("default"), dict):
                sub["default"] = _with_defaults(sub["default"], sub)
        keys = list(schema)
        if "required" in out and keys.index("properties") < keys.index("required"):
            out["required"] = [
                name for name in out["required"] if "default" not in properties.get(name, {})
            ]
    return out


def _with_defaults(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    filled = dict(value)
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and "default" in sub and name not in filled:
            default = sub["default"]
            filled[name] = _with_defaults(default, sub) if isinstance(default, dict) else default
    return filled


def compile_check(schema: dict[str, Any]) -> Check:
    """A function checking an instance against ``schema`` the way nio's validator does: it
    fills in the schema's defaults and raises ``jsonschema.ValidationError`` on a failure."""
    nio_check = nio.schemas.Validator(schema, format_checker=nio.schemas.Checker).validate
    try:
        fast = fastjsonschema.compile(
            {**as_nio_reads_it(schema), "$schema": _DRAFT4}, formats=_FORMATS
        )
    except fastjsonschema.JsonSchemaDefinitionException:
        return nio_check

    def check(instance: Any) -> None:
        try:
            fast(instance)
        except fastjsonschema.JsonSchemaValueException:
            # What fails here (rarely) is judged again by nio's own validator, which then
            # raises its own error and leaves the event as nio leaves it: it fills every
            # default in before finding what is wrong, where ours stops at the first thing
            # wrong, and a rejected event's content still reaches the core.
            nio_check(instance)

    return check


def validate_json(instance: Any, schema: dict[str, Any]) -> None:
    """``nio.schemas.validate_json``, compiled once per schema."""
    found = _checks.get(id(schema))
    if found is None or found[0] is not schema:
        found = (schema, compile_check(schema))
        _checks[id(schema)] = found
    found[1](instance)


def install() -> None:
    """Make nio use :func:`validate_json` (idempotent)."""
    for name in _USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "validate_json", None) is _nio_validate:
            module.validate_json = validate_json  # type: ignore[attr-defined]
