"""One access-log line a request: method, path (never the query string), status and time,
and what the edge learnt of it: operation name and type, outcome and the actor (`key:<name>`,
`token:<iss>#<sub>`; never the variables or the document). The request id is added to every
line by web/logs.py; web/edge.py writes the line when the response is done (or the app
failed)."""

from __future__ import annotations

import logging

from starlette.types import Scope

from web.logs import ACCESS
from web.requests import RequestInfo

access_logger = logging.getLogger(ACCESS)

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a decoded path
# (%0a, %1b) would otherwise forge log lines or write terminal escape sequences. The
# backslash is escaped too, so that an escape in the log always means an escaped character.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
} | {ord("\\"): "\\\\"}


def printable(text: str) -> str:
    """`text` with control characters written as escapes: safe on one log line."""
    return text.translate(_ESCAPES)


def log_access(scope: Scope, status: int, elapsed: float, info: RequestInfo | None) -> None:
    """The line of one request: `status` as answered (500 when none was), `elapsed` seconds."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    elapsed_ms = elapsed * 1000
    method, path = printable(scope["method"]), printable(scope["path"])
    fields = {
        "operation": info.operation_name if info else None,
        "operation_type": info.operation_type if info else None,
        "outcome": info.outcome if info else None,
        # The actor, as events name it: a token whose subject is "admin" is not the key "admin".
        "actor": printable(info.principal) if info and info.principal else None,
    }
    shown = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
    # The record that access_logger.info(..., extra=...) would make, made directly: half the
    # cost of a line (no look for the caller's frame, no check of each extra key, which are
    # fixed here and clash with no attribute of a record).
    record = access_logger.makeRecord(
        access_logger.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.1fms%s",
        (method, path, status, elapsed_ms, shown),
        None,
    )
    record.__dict__.update(method=method, path=path, status=status,
                           duration_ms=round(elapsed_ms, 1), **fields)  # fmt: skip
    access_logger.handle(record)
