"""Headers every response carries: its type is what it says, and nothing keeps a copy.

Responses hold personal data; `no-store` keeps it out of browser and proxy caches, and
`nosniff` stops a browser from reading a JSON or text answer as something it could run.
web/edge.py adds them to every HTTP response.
"""

from __future__ import annotations

HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))
_NAMES = frozenset(name for name, _ in HEADERS)


def add_security_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Append to a response's headers each of HEADERS that it does not set itself."""
    present = {lowered for name, _ in headers if (lowered := name.lower()) in _NAMES}
    if not present:
        headers.extend(HEADERS)
        return
    headers.extend((name, value) for name, value in HEADERS if name not in present)
