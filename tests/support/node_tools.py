"""Running the Node tools of the client tests: telemetry off, output kept as artifacts."""

from __future__ import annotations

import functools
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
EXAMPLE_APP = ROOT / "examples" / "browser-app"


def run_node(
    node: str, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run tests/node/<script>."""
    return run_module(node, ROOT / "tests" / "node" / script, *args, env=env)


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


def run_npm(folder: Path, *args: str) -> None:
    """`npm ARGS` in `folder`, as a person follows a README; its output kept as an artifact."""
    done = subprocess.run(
        ["npm", *args], cwd=folder, env=NODE_ENV, capture_output=True, text=True, timeout=600
    )
    save_artifact(f"npm-{folder.name}-{args[0]}.txt", done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr


@functools.cache
def example_app_installed() -> Path:
    """The example app with its own packages (`npm ci` in its folder), once a run."""
    find_node()
    run_npm(EXAMPLE_APP, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
    return EXAMPLE_APP
