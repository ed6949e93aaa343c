"""Structured logs: one event name plus key/value fields per line.

Call sites write `log_event(log, "block_committed", height=5, txs=3)`.  The entry point calls
`configure(level, fmt)` once: JSON objects one per line when stdout is not a terminal (what
Docker and the integration tests read), readable `time LEVEL event k=v ...` text on a terminal.
Stable keys: event, height, round, peer, tx, fl_round.  Any string value is truncated, so text
a peer sent can never flood or forge a log line.
"""

import json
import logging
import sys
import time
from typing import Any, TextIO

_FIELDS_ATTR = "fc_fields"
VALUE_CHARS_MAX = 200
EXC_CHARS_MAX = 8000


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, exc_info=exc_info, extra={_FIELDS_ATTR: fields})


def iso_utc(created_s: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2026-12-03T12:00:00.123Z (log shippers parse it
    without knowing the node's time zone; epoch floats needed a conversion to read)."""
    millis = int(created_s * 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return f"{stamp}.{millis % 1000:03d}Z"


def _clean(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.hex()
    if isinstance(value, str):
        if len(value) > VALUE_CHARS_MAX:
            value = value[:VALUE_CHARS_MAX] + "..."
        return value.replace("\n", "\\n")
    if isinstance(value, bool | int | float) or value is None:
        return value
    return _clean(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname.lower(),
            "event": _clean(record.getMessage()),
            "logger": record.name,
        }
        for key, value in getattr(record, _FIELDS_ATTR, {}).items():
            body[key] = _clean(value)
        if record.exc_info:
            # Our own tracebacks are kept whole (they are not peer-supplied text).
            body["exc"] = self.formatException(record.exc_info)[-EXC_CHARS_MAX:]
        return json.dumps(body, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        millis = int(record.msecs)
        parts = [f"{stamp}.{millis:03d}", f"{record.levelname:<7}", _clean(record.getMessage())]
        for key, value in getattr(record, _FIELDS_ATTR, {}).items():
            parts.append(f"{key}={_clean(value)}")
        line = " ".join(str(p) for p in parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Install the one handler on the root logger (entry points only)."""
    out = stream if stream is not None else sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library chatter (aiohttp access logs) stays out unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
