"""JSON log lines: one object per line, extra fields kept, tracebacks inside the line."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import JsonFormatter


def test_a_json_log_line_carries_time_level_logger_message_and_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("reply %s\nfailed", "r1", extra={"request_id": "r1", "guild": 7})
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING"
    assert first["logger"] == "tests.json"
    assert first["message"] == "reply r1\nfailed"
    assert (first["request_id"], first["guild"]) == ("r1", 7)
    assert first["time"].endswith("+00:00")
    assert "args" not in first and "msg" not in first
    assert second["level"] == "ERROR"
    assert "ValueError: bad value" in second["exception"]
