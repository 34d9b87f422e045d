"""Running the Node tools of the client tests: telemetry off, output kept as artifacts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.databases import IN_CI
from tests.support.paths import ARTIFACTS, ROOT

NODE_ENV = {
    **os.environ,
    "APOLLO_TELEMETRY_DISABLED": "1",
    "NO_UPDATE_NOTIFIER": "1",
    "DO_NOT_TRACK": "1",
}


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def run_node(
    node: str, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run tests/node/<script>."""
    return run_module(node, ROOT / "tests" / "node" / script, *args, env=env)


def run_tool(node: str, entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a package's command line, by its entry in node_modules (vite/bin/vite.js)."""
    return run_module(node, ROOT / "node_modules" / entry, *args)


def run_module(
    node: str, path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(path), *args],
        cwd=ROOT,
        env={**NODE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def save_artifact(name: str, text: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(text)
    return path


def find_node() -> str:
    path = shutil.which("node")
    if path is None:
        problem = "Node.js is not installed"
    elif not (ROOT / "node_modules" / ".package-lock.json").exists():
        problem = "node_modules is missing (make env runs npm ci when Node is there)"
    else:
        return path
    if IN_CI:
        pytest.fail(f"CI=true requires the Node tests: {problem}")
    pytest.skip(problem)


def find_chromium() -> str:
    """Debian's Chromium, never a downloaded one (else skip; in CI, fail)."""
    if not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"CI=true requires the browser tests: {problem}")
        pytest.skip(problem)
    return CHROMIUM
