"""docs/settings.md is generated from `Settings`; a setting added without regenerating it fails
here, as a schema change without `make schema` fails tests/test_schema.py."""

from __future__ import annotations

from pydantic import Field

from tests.support.paths import ROOT
from web.settings import Settings
from web.settings_doc import reference

COMMITTED = ROOT / "docs" / "settings.md"


def test_committed_settings_reference_matches_the_code() -> None:
    assert COMMITTED.read_text() == reference(), "docs/settings.md is stale: run make docs"


def test_a_new_setting_makes_the_committed_reference_stale() -> None:
    class Grown(Settings):
        new_setting: int = Field(default=3, ge=1, description="A setting added later.")

    grown = reference(Grown)
    assert COMMITTED.read_text() != grown
    assert "| `NEW_SETTING` | `3` | ≥ 1 | A setting added later. |" in grown.splitlines()


def test_every_setting_has_a_description_and_a_row() -> None:
    rows = [line for line in reference().splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    assert all(field.description for field in Settings.model_fields.values())
