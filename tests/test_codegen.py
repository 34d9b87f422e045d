"""codegen.ts: GraphQL Code Generator makes TypeScript types of every example operation from the
committed schema, and they (with the example app that uses them) type-check with no error."""

from __future__ import annotations

import re

from tests.support.node_tools import run_tool, save_artifact
from tests.support.paths import OPERATIONS, ROOT

GENERATED = ROOT / "examples" / "browser-app" / "src" / "gql"


def test_codegen_output_type_checks(node: str) -> None:
    generated = run_tool(node, "@graphql-codegen/cli/cjs/bin.js", "--config", "codegen.ts")
    assert generated.returncode == 0, generated.stdout + generated.stderr
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

    checked = run_tool(
        node, "typescript/bin/tsc", "--noEmit", "-p", "examples/browser-app/tsconfig.json"
    )
    save_artifact("tsc.txt", checked.stdout + checked.stderr)
    assert checked.stdout + checked.stderr == ""  # 0 errors
    assert checked.returncode == 0
