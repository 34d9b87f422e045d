"""The log's shape: plain text (the default) or one JSON object a line (`LOG_FORMAT=json`).

Every line written while a request runs carries its request id, so the access line, a masked
error's line and anything else of one request can be found together; with tracing on, the
JSON line carries its trace and span id too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from web.requests import request_info
from web.tracing import log_ids

# The attributes every LogRecord has; anything else was passed in `extra` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or "-") to every record, and inside a traced request (web/tracing.py)
    its `trace_id` and `span_id`: the JSON line names the trace to look up."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = request_info()
        record.request_id = info.id if info else "-"
        if ids := log_ids():
            record.trace_id, record.span_id = ids
        return True


class SecondsCache:
    """A record's time down to the second, written once a second (strftime is a third of a
    plain line's formatting; the server writes many lines a second). One tuple is replaced
    whole, so threads that log too read a pair that belongs together."""

    def __init__(self, form: str, convert: Callable[[float], time.struct_time]) -> None:
        self.form = form
        self.convert = convert
        self.last: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        last_second, written = self.last
        if second != last_second:
            written = time.strftime(self.form, self.convert(created))
            self.last = (second, written)
        return written


class PlainFormatter(logging.Formatter):
    """PLAIN, its time written as logging.Formatter writes it (local time, milliseconds)."""

    def __init__(self) -> None:
        super().__init__(PLAIN)
        self.seconds = SecondsCache(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self.seconds(record.created)},{int(record.msecs):03d}"  # as "%s,%03d" does


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, extra fields."""

    seconds = SecondsCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.seconds(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", "-") != "-":
            entry["request_id"] = record.request_id  # type: ignore[attr-defined]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__  # never the message: it may hold data
        return orjson.dumps(entry, default=str).decode()


ACCESS = "customer_api.access"  # web/access_log.py's logger
PLAIN = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class LoopTurnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the access lines of one turn of the event loop at its end, in one write.

    The access log writes a line for every request, and a write to stderr is a system call
    (a third of the line's cost): under load, many requests end in one turn of the loop.
    Access lines logged in the loop's thread wait for the end of the turn (`call_soon`).
    Every other line (rare: start, stop, warnings) is written at once, after any that wait,
    so the order holds and nothing waits on a loop that is about to end (uvicorn's worker
    processes end by their signal, with no exit handlers). `flush` writes whatever waits.
    """

    def __init__(self, stream: Any, deferred: frozenset[str] = frozenset({ACCESS})) -> None:
        super().__init__(stream)
        self.deferred = deferred  # the loggers whose lines may wait for the turn's end
        self.waiting: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # whose turn's end writes them

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        loop = None
        if record.name in self.deferred:
            try:  # noqa: SIM105  (contextlib.suppress costs a context manager a line)
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop in this thread
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self.waiting.append(line)
            if loop is not None and (self.loop is None or self.loop is loop):
                if self.loop is None:
                    self.loop = loop
                    loop.call_soon(self.flush)
                return
        self.flush()  # now, after what waits

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            waiting, self.waiting, self.loop = self.waiting, [], None
            if waiting:
                try:
                    self.stream.write("".join(waiting))
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": "a log write failed"}))
            super().flush()


def configure_logging(level: str, form: str) -> None:
    """Send every logger (uvicorn's too) to stderr in the chosen form."""
    handler = LoopTurnHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither form shows a record's thread or process, which every record would otherwise
    # look up as it is made (a quarter of the cost of an access line's record).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
