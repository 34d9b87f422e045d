"""The command line as a person meets it: the customer-api script, --version, settings from a
.env file, quiet key commands, and hints that work as printed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT
from web.hints import command

SCRIPT = Path(sys.executable).parent / "customer-api"  # [project.scripts], made by make env


def run(*arguments: str, cwd: Path = ROOT, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | settings
    return subprocess.run(
        [str(SCRIPT), *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def sqlite(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_the_script_says_its_version() -> None:
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, "customer-api 0.1.0\n")


def test_settings_come_from_a_dot_env_file_and_the_environment_wins(tmp_path: Path) -> None:
    from_file, from_environment = tmp_path / "from-file.db", tmp_path / "from-environment.db"
    (tmp_path / ".env").write_text(f"# the file's\nDATABASE_URL={sqlite(from_file)}\n")
    assert run("migrate", cwd=tmp_path).returncode == 0
    assert from_file.exists()
    from_file.unlink()
    done = run("migrate", cwd=tmp_path, DATABASE_URL=sqlite(from_environment))
    assert done.returncode == 0, done.stderr
    assert from_environment.exists()
    assert not from_file.exists()


def test_a_dot_env_line_that_names_no_setting_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URLL=sqlite+aiosqlite:///./typo.db\n")
    done = run("migrate", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        "  DATABASE_URLL: not a setting of this server (in .env; docs/settings.md lists them)"
    ]
    assert not (tmp_path / "typo.db").exists()


def test_key_commands_print_their_answer_only_unless_asked_for_more(tmp_path: Path) -> None:
    url = sqlite(tmp_path / "keys.db")
    created = run("keys", "create", "--name", "billing", "--scope", "customers:read",
                  DATABASE_URL=url)  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # no "Context impl SQLiteImpl." and the like
    assert created.stdout.splitlines()[0] == (
        "Created the key 'billing' with customers:read. It is shown this once:"
    )
    listed = run("keys", "list", "-v", DATABASE_URL=url)
    assert listed.returncode == 0
    assert "alembic" in listed.stderr
    assert "billing" in listed.stdout


def test_a_scope_typo_lists_the_scopes_by_name() -> None:
    done = run("keys", "create", "--name", "x", "--scope", "customer:read")
    assert done.returncode == 2
    assert "(choose from 'customers:read', 'customers:write', 'keys:manage'" in done.stderr
    assert "Scope." not in done.stderr


def test_a_hinted_command_works_as_printed(tmp_path: Path) -> None:
    """What the banner and the start-up problems print (web/hints.py), run as printed."""
    printed = command("keys list")
    assert printed.endswith("customer-api keys list")  # the script make env puts in .venv/bin
    env = {**os.environ, "DATABASE_URL": sqlite(tmp_path / "hinted.db")}
    done = subprocess.run(
        shlex.split(printed), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("name ")
