"""Named crash points for tests that prove crash safety (``CIVICBOT_FAILPOINT=name``).

Production never sets the variable; the integration tests use it to kill the process at the
exact moment a guarantee is hardest to keep.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(filter(None, os.environ.get("CIVICBOT_FAILPOINT", "").split(",")))


def hit(name: str, detail: str = "") -> None:
    """SIGKILL this process if the failpoint ``name`` is active, or ``name:detail`` (a crash
    point of one kind of effect only, e.g. ``effect-sent:mutual_aid.intro``)."""
    if name in _ACTIVE or (detail and f"{name}:{detail}" in _ACTIVE):
        os.kill(os.getpid(), signal.SIGKILL)
