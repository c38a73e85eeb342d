"""How long the first date a resident types that is *not* a date takes, right after a start.

Issue 9: the first unreadable closing time after a start took about 4 s, because dateparser,
given no languages, loads every one of its ~200 languages to try them all. civicbot now reads
only ``bot.languages`` (default ``["en"]``) and warms those up in a background thread at start.

Each case runs in a fresh interpreter (the cost is a first-time cost), ``--repeats`` times:

- **before (all languages)**: ``dateparser.parse`` called as civicbot called it before the fix,
  with no ``languages``;
- **bot.languages = [...]**: :func:`civicbot.core.dates.parse_when` cold, restricted to the list;
- **... + warm-up at start**: :func:`civicbot.core.dates.warm_up` ran (and finished) first, as
  ``civicbot run`` starts it; the warm-up's own time is reported beside it.

Each child parses an unreadable text first ("whenever suits", the case from the issue), then a
readable one ("friday 18:00"). Exits 1 when the warmed-up unreadable parse exceeds
``--target`` seconds (median).

    python bench/bench_dates.py [--repeats 5] [--target 0.1] [--languages en,fr]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

UNREADABLE = "whenever suits"
READABLE = "friday 18:00"


def child(mode: str, languages: list[str]) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from civicbot.core import dates

    zone, now = ZoneInfo("Europe/London"), datetime.now(UTC)
    result: dict[str, float] = {}
    if mode == "before":
        import dateparser

        settings = {  # exactly what civicbot.core.dates passed before the fix
            "PREFER_DATES_FROM": "future",
            "TIMEZONE": zone.key,
            "RETURN_AS_TIMEZONE_AWARE": False,
            "RELATIVE_BASE": now.astimezone(zone).replace(tzinfo=None),
            "DATE_ORDER": "DMY",
        }

        def parse(text: str) -> None:
            dateparser.parse(text, settings=settings)

    else:
        dates.use_languages(languages)
        if mode == "warm":
            started = time.perf_counter()
            dates.warm_up().join()
            result["warm_up"] = time.perf_counter() - started

        def parse(text: str) -> None:
            try:
                dates.parse_when(text, zone, now)
            except dates.DateError:
                pass

    for label, text in (("unreadable", UNREADABLE), ("readable", READABLE)):
        started = time.perf_counter()
        parse(text)
        result[label] = time.perf_counter() - started
    return result


def measure(mode: str, languages: list[str], repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--languages", ",".join(languages)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append(json.loads(output))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.1, help="seconds, warmed-up median")
    parser.add_argument("--languages", default="en", help="comma-separated, like bot.languages")
    parser.add_argument("--child", choices=("before", "cold", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    languages = [code.strip() for code in args.languages.split(",") if code.strip()]
    if args.child:
        print(json.dumps(child(args.child, languages)))
        return 0
    shown = json.dumps(languages)
    cases = [
        ("before (all languages)", "before"),
        (f"bot.languages = {shown}", "cold"),
        (f"bot.languages = {shown} + warm-up at start", "warm"),
    ]
    print(f"Medians of {args.repeats} fresh processes each, seconds.\n")
    print("| case | first unreadable date | then a readable one | warm-up (background) |")
    print("|---|---|---|---|")
    warmed = 0.0
    for label, mode in cases:
        numbers = measure(mode, languages, args.repeats)
        warm = f"{numbers['warm_up']:.3f}" if "warm_up" in numbers else "—"
        print(f"| {label} | {numbers['unreadable']:.3f} | {numbers['readable']:.3f} | {warm} |")
        if mode == "warm":
            warmed = numbers["unreadable"]
    if warmed > args.target:
        print(f"\nMISSED: {warmed:.3f} s > target {args.target} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
