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


def test_log_records_never_carry_a_urls_password() -> None:
    from bot.logs import SecretFilter, mask_secrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter())
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("host %s failed", "http://user:hunter2@gpu1:11434")
        try:
            raise ConnectionError("cannot connect to postgresql://bot:s3cret@db:5432/x")
        except ConnectionError:
            logger.exception("database down")
        logger.warning("token-style user-info: %s", "https://abc.def.ghi@example.com/x")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "hunter2" not in text and "s3cret" not in text and "abc.def.ghi" not in text
    assert "http://user:***@gpu1:11434" in text
    assert "postgresql://bot:***@db:5432/x" in text
    assert mask_secrets("no url here: a@b") == "no url here: a@b"
