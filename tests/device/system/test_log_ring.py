"""The gate's recent warnings and errors (device/system/log_ring.py): kept redacted, never below
WARNING, never a record marked personal, one printable line of at most 300 characters."""

from __future__ import annotations

import logging

import pytest

from device.system.log_ring import LINE_MAX_CHARS, RecentLogs, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("card 079203001234 denied", "card [number] denied"),
        ("phone 0912 345 678 called", "phone [number] called"),
        ("pass 0123456789abcdef refused", "pass [id] refused"),
        ("mail an@example.vn now", "mail [email] now"),
        (
            "lane 2 at 10.0.0.5:8883, 3 events, seq 123456",
            "lane 2 at 10.0.0.5:8883, 3 events, seq 123456",
        ),
        ("line\nbreak\x1b[31m", "line\\nbreak\\x1b[31m"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_only_warnings_and_errors_kept_redacted_and_personal_records_never() -> None:
    ring = RecentLogs(kept=3)
    logger = logging.getLogger("gatescan.test.ring")
    logger.addHandler(ring)
    logger.setLevel(logging.DEBUG)
    heard: list[str] = []
    ring.follow(lambda line: heard.append(line.message))
    try:
        logger.info("info is not kept")
        logger.warning("card %s denied", "079203001234")
        logger.error("holder %s", "Nguyễn Văn A", extra={"personal": True})
        logger.error("x" * 1000)
        try:
            raise ValueError("079203001234 bad")
        except ValueError:
            logger.exception("failed")
        logger.critical("last")
    finally:
        logger.removeHandler(ring)
    lines = ring.recent(10)
    assert [line.level for line in lines] == ["ERROR", "ERROR", "CRITICAL"]
    assert len(lines[0].message) == LINE_MAX_CHARS
    assert lines[1].message == "failed (ValueError: [number] bad)"
    assert heard[0] == "card [number] denied"
    assert not any("Nguyễn" in message for message in heard)
