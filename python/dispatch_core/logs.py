"""How dispatch-core logs: `--log-format json|text`, always in UTC with the zone written.

* **json**: one JSON object per line: `time` (RFC 3339, UTC, `Z`), `level`, `logger`,
  `message`, the fields of the RPC the record was written in (`method`, `request_id`,
  `actor`, `principal`, `peer`, from `service.calls.current_call`), any `extra` fields the
  caller gave (the access log's `code` and `duration_ms`), and `exception` with the
  traceback. For log shippers.
* **text**: `2026-12-01T13:18:05.909Z INFO logger: message`, then the call's fields as
  `key=value`. For people.

Records written inside an RPC carry its context without the code that logs them knowing
about it: an unhandled error logged by the servicer names the method, request_id, actor
and peer of the call that hit it.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

from dispatch_core.service.calls import current_call

FORMATS = ("json", "text")

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


_second_cache: tuple[int, str] = (-1, "")

#: One encoder for every line (json.dumps with options builds a new one per call).
_to_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def utc_timestamp(created: float) -> str:
    """`created` (seconds since the epoch) as RFC 3339 in UTC with milliseconds."""
    global _second_cache  # noqa: PLW0603 (a one-entry cache: strftime once per second)
    seconds = int(created)
    cached_second, prefix = _second_cache
    if seconds != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    return f"{prefix}.{int((created - seconds) * 1000):03d}Z"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """The record's call fields and extras: from `extra=` if given, else the current call."""
    fields: dict[str, Any] = {}
    call = current_call.get()
    if call is not None:
        fields.update(call.fields())
    for key, value in record.__dict__.items():
        if key not in _STANDARD:
            fields[key] = value
    return fields


class _Layout(logging.Formatter):
    """A line from its parts: what both a LogRecord and the access log's fast path
    (`write_fields`) are written through, so both look the same."""

    def format(self, record: logging.LogRecord) -> str:
        exception = None
        if record.exc_info:
            exception = self.formatException(record.exc_info)
        elif record.exc_text:
            exception = record.exc_text
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            fields=_context(record),
            exception=exception,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        *,
        fields: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        raise NotImplementedError


class JsonFormatter(_Layout):
    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        *,
        fields: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        out: dict[str, Any] = {
            "time": utc_timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        for key, value in fields.items():
            if value != "" and value is not None:
                out[key] = value
        if exception:
            out["exception"] = exception
        return _to_json(out)


class TextFormatter(_Layout):
    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        *,
        fields: dict[str, Any],
        exception: str | None = None,
    ) -> str:
        line = f"{utc_timestamp(created)} {level} {logger}: {message}"
        context = " ".join(
            f"{key}={_quoted(value)}" for key, value in fields.items() if value not in ("", None)
        )
        if context:
            line += " " + context
        if exception:
            line += "\n" + exception
        return line


def _quoted(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


#: The logger of the per-RPC access lines (`service.interceptor.AccessLog`).
ACCESS_LOGGER = "dispatch_core.access"
#: Longest an access line waits in the buffer before it is written.
FLUSH_INTERVAL_S = 0.2


class _Writer(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes every record at once, except access lines, which are buffered and written
    with the next other record or within FLUSH_INTERVAL_S.

    Why: the access log sits on every RPC's path, and a write system call per line is
    most of its cost there (it also hands the GIL to grpcio's other threads in the middle
    of the call). Buffered, a line costs its formatting and a memory copy. The price: a
    process killed with SIGKILL loses at most the last FLUSH_INTERVAL_S of access lines;
    other records are never held back.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending = False
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line)
                if record.name == ACCESS_LOGGER:
                    self._pending = True
                else:
                    self.stream.flush()
                    self._pending = False
        except Exception:
            self.handleError(record)

    def write_fields(self, logger: str, message: str, fields: dict[str, Any]) -> None:
        """An INFO line straight from its parts, without a LogRecord: the access log's
        path (building a record and walking the logging machinery costs more than the
        line itself)."""
        layout = self.formatter
        if not isinstance(layout, _Layout):
            return
        line = layout.line(time.time(), "INFO", logger, message, fields=fields) + self.terminator
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line)
            self._pending = True

    def _flusher(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            if self._pending:
                self.flush()
                self._pending = False

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def _buffered_stderr() -> TextIO:
    """fd 2 block-buffered (sys.stderr is line-buffered: a system call per line)."""
    raw = io.FileIO(sys.stderr.fileno(), "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, 1 << 16), encoding="utf-8", errors="replace")


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Sends every record to stderr (or `stream`) in the chosen format, replacing any
    earlier configuration, so calling it twice does not double every line."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {fmt!r}")
    writer = _Writer(stream if stream is not None else _buffered_stderr())
    writer.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _Writer):
            old.close()
    root.addHandler(writer)
    root.setLevel(level.upper())


def flush() -> None:
    """Writes every buffered line now."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def is_configured() -> bool:
    """Whether `configure` has run (the CLI reports start-up errors through the log then)."""
    return any(isinstance(h, _Writer) for h in logging.getLogger().handlers)


def write_access(logger: str, message: str, fields: dict[str, Any]) -> bool:
    """Writes an access line through the configured writer; False when logging was not
    set up by `configure` (the caller then logs it the ordinary way)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Writer):
            handler.write_fields(logger, message, fields)
            return True
    return False
