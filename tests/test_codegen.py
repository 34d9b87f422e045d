"""examples/browser-app/codegen.ts: GraphQL Code Generator makes TypeScript types of every
example operation from the committed schema, and they (with the example app that uses them)
type-check with no error, with the example's own packages and scripts."""

from __future__ import annotations

import re

from tests.support.node_tools import EXAMPLE_APP, example_app_installed, run_npm
from tests.support.paths import OPERATIONS

GENERATED = EXAMPLE_APP / "src" / "gql"


def test_codegen_output_type_checks() -> None:
    app = example_app_installed()
    run_npm(app, "run", "codegen")
    types = (GENERATED / "graphql.ts").read_text()
    named = re.compile(r"^(?:query|mutation|subscription) (\w+)", re.MULTILINE)
    operations = sorted(
        named.search(path.read_text()).group(1)  # type: ignore[union-attr]
        for path in OPERATIONS.glob("*.graphql")
    )
    documents = sorted(re.findall(r"^export const (\w+)Document\b", types, re.MULTILINE))
    assert documents == operations
    # Timestamps are strings on the wire, and every scalar is mapped (strictScalars).
    assert "createdAt: string" in types
    assert "any" not in re.findall(r":\s*(\w+)", types)

    run_npm(app, "run", "typecheck")  # tsc: 0 errors, or npm fails with them
