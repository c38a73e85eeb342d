"""Private people's ids never reach a log line."""

from __future__ import annotations

import logging

from civicbot.logs import FORMAT, PrivacyFilter, private, pseudonym


def capture(filter_: PrivacyFilter) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(filter_)
    logger = logging.getLogger(f"test.logs.{id(filter_)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, lines


def test_private_wrapper_prints_a_stable_pseudonym():
    log, lines = capture(PrivacyFilter())
    log.info("secret vote from %s", private("@ann:example.org"))
    log.info("secret vote from %s", private("@ann:example.org"))
    assert "@ann" not in "".join(lines)
    assert lines[0].endswith(pseudonym("@ann:example.org"))
    assert lines[0].split()[-1] == lines[1].split()[-1]


def test_protected_ids_are_replaced_wherever_they_appear():
    privacy = PrivacyFilter()
    privacy.protect("@vulnerable:example.org")
    log, lines = capture(privacy)
    log.info("need from %s and %s", "@vulnerable:example.org", "@helper:example.org")
    log.info("raw text mentioning @vulnerable:example.org")
    text = "\n".join(lines)
    assert "@vulnerable:example.org" not in text
    assert "@helper:example.org" in text
    assert text.count("<private:") == 2
