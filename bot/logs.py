"""Log lines as JSON (`log_format = "json"`): one object per line, for log collectors; and the
masking of secrets in URLs (a password in DATABASE_URL, user-info in an Ollama URL) wherever
the bot prints or logs text."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields, "exception"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# scheme://user:password@host or scheme://token@host: the user-info part of any URL.
_USERINFO = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@'\"]*)(?P<secret>:[^/\s@'\"]*)?@", re.I
)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (a user-info without a
    password, which may be a token, is masked whole): `postgresql://bot:s3cret@db/x` →
    `postgresql://bot:***@db/x`."""

    def masked(match: re.Match[str]) -> str:
        if match.group("secret") is None:
            return f"{match.group('scheme')}***@"
        return f"{match.group('scheme')}{match.group('user')}:***@"

    return _USERINFO.sub(masked, text)


class SecretFilter(logging.Filter):
    """Masks URL passwords in every record that passes through the handler it is on: log lines
    name URLs (an Ollama host that failed, a database error) and exceptions quote them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_secrets(text)
        return True
