"""Personal data must never reach a log line: the whole test run's log is scanned for it.

Every log record of the test process (at the server's default level, INFO) and every line
the server processes wrote go to artifacts/test-run.log; when the run ends, the file is
scanned for anything shaped like an e-mail address or an E.164 phone number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tests.support.paths import ARTIFACTS

RUN_LOG = ARTIFACTS / "test-run.log"
PERSONAL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+|\+\d{10,15}\b")


def personal_data_in(lines: Iterable[str]) -> list[str]:
    """The lines that hold something shaped like an e-mail address or a phone number."""
    return [line.rstrip() for line in lines if PERSONAL.search(line)]


def append(lines: Iterable[str]) -> None:
    RUN_LOG.parent.mkdir(exist_ok=True)
    with RUN_LOG.open("a") as log:
        log.writelines(lines)
