"""One cached JSON-schema validator per nio schema, instead of a new one per event.

matrix-nio checks every event of every sync against a JSON schema and builds a fresh
``jsonschema`` validator each time (``nio.schemas.validate_json``). Building it is a third of
the cost, and with thousands of rooms at start-up that is event-loop time nobody gets answered
in. The schemas are module constants, so one validator each, built on first use, checks
exactly the same things (the same validator class, defaults and format checks).
"""

from __future__ import annotations

import sys
from typing import Any

import nio.schemas

_validators: dict[int, tuple[dict[str, Any], Any]] = {}
_nio_validate = nio.schemas.validate_json
# The nio modules that imported ``validate_json`` by name.
_USERS = ("nio.schemas", "nio.events.misc", "nio.responses", "nio.crypto.olm_machine")


def validate_json(instance: Any, schema: dict[str, Any]) -> None:
    """``nio.schemas.validate_json`` with the validator kept per schema."""
    found = _validators.get(id(schema))
    if found is None or found[0] is not schema:
        found = (schema, nio.schemas.Validator(schema, format_checker=nio.schemas.Checker))
        _validators[id(schema)] = found
    found[1].validate(instance)


def install() -> None:
    """Make nio use :func:`validate_json` (idempotent)."""
    for name in _USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "validate_json", None) is _nio_validate:
            module.validate_json = validate_json  # type: ignore[attr-defined]
