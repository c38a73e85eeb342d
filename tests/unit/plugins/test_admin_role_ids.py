"""``!role grant`` checks the id it is given: the spec's length limit and grammar."""

from __future__ import annotations

import pytest
from civicbot_plugins.admin.role_commands import user_id_problem


@pytest.mark.parametrize(
    "user_id",
    [
        "@sam:example.org",
        "@sam.smith_2=x/y+z:matrix.example.org:8448",
        "@old!style$name:example.org",  # historical localparts are still valid ids
        "@sam:[2001:db8::1]:8448",
        "@sam:127.0.0.1",
    ],
)
def test_valid_ids_pass(user_id):
    assert user_id_problem(user_id) is None


@pytest.mark.parametrize(
    "user_id",
    [
        "@" + "a" * 50_000 + ":example.org",
        "@" + "a" * 244 + ":example.org",  # 256 bytes
        "@sam",
        "@:example.org",
        "@sam:exa mple.org",
        "@sam:example.org:port",
        "@sam\u200b:example.org",
        "@sa m:example.org",
    ],
)
def test_invalid_ids_are_refused_with_a_reason(user_id):
    problem = user_id_problem(user_id)
    assert problem and len(problem) < 80
