"""How a hint names one of this program's commands so that it works as printed: the
`customer-api` script of the environment the server runs in (on PATH, or by its path), else
this interpreter running server.py."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

SCRIPT = "customer-api"  # pyproject.toml's [project.scripts]
SERVER = Path(__file__).resolve().parent.parent / "server.py"


def command(arguments: str) -> str:
    """The command line that runs `customer-api <arguments>` from the current directory."""
    script = Path(sys.executable).parent / SCRIPT  # the environment's bin (not resolved)
    if not script.exists():
        return f"{shlex.quote(sys.executable)} {shlex.quote(str(SERVER))} {arguments}"
    found = shutil.which(SCRIPT)
    if found is not None and Path(found).absolute() == script.absolute():
        return f"{SCRIPT} {arguments}"
    return f"{shlex.quote(shown(script))} {arguments}"


def shown(path: Path) -> str:
    """`path` relative to the current directory when it lies below it, else absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
