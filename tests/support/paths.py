"""Where the repository's files are, for the helpers and tests that read or run them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
OPERATIONS = ROOT / "graphql" / "operations"
