"""The served schema: the committed SDL, the public contract, the example operations, the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    build_schema,
    find_breaking_changes,
    get_named_type,
    parse,
    validate,
)

from db import rules
from schema import schema
from schema.translate import MIRRORED, input_path, mirror
from tests.support.paths import OPERATIONS, ROOT

CONTRACT = ROOT / "tests" / "contract" / "api-contract-1.1.graphql"
SHARED_CONTRACT = ROOT.parent / "shared" / "api-contract-1.1.graphql"
BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def test_committed_sdl_matches_the_code() -> None:
    committed = (ROOT / "graphql" / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", "graphql/schema.graphql is stale: run make schema"


def test_served_schema_keeps_the_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    assert find_breaking_changes(contract, schema._schema) == []


@pytest.mark.skipif(not SHARED_CONTRACT.exists(), reason="no ../shared checkout beside this one")
def test_contract_copy_is_current() -> None:
    assert CONTRACT.read_text() == SHARED_CONTRACT.read_text()


@pytest.mark.parametrize("path", sorted(OPERATIONS.glob("*.graphql")), ids=lambda p: p.stem)
def test_example_operation_validates(path: Path) -> None:
    document = parse(path.read_text())
    assert validate(schema._schema, document) == []
    # One operation per file, named in PascalCase after the snake_case file.
    names = [d.name.value for d in document.definitions if getattr(d, "name", None)]  # type: ignore[attr-defined]
    assert names == ["".join(part.title() for part in path.stem.split("_"))]


def test_every_operation_has_an_example() -> None:
    root_fields = {
        *schema._schema.query_type.fields,  # type: ignore[union-attr]
        *schema._schema.mutation_type.fields,  # type: ignore[union-attr]
    }
    documents = " ".join(p.read_text() for p in OPERATIONS.glob("*.graphql"))
    used = {name for name in root_fields if re.search(rf"\b{name}\s*[({{]", documents)}
    assert sorted(root_fields - used) == []


def undocumented() -> list[str]:
    missing = []
    for name, type_ in schema._schema.type_map.items():
        # Introspection's types (__Type) and those of Federation and @link (_Any, link__Import)
        # are specified by others; everything of ours is documented.
        if name.startswith("_") or "__" in name or name in BUILT_IN_SCALARS:
            continue
        if not type_.description:
            missing.append(name)
        if isinstance(type_, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in type_.values.items() if not value.description]
        if isinstance(type_, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in type_.fields.items() if not field.description]
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for f, field in type_.fields.items():
                if f.startswith("_"):  # Federation's _service and _entities
                    continue
                if not field.description:
                    missing.append(f"{name}.{f}")
                missing += [
                    f"{name}.{f}({a})" for a, arg in field.args.items() if not arg.description
                ]
        assert not isinstance(type_, GraphQLScalarType) or type_.description
    return missing


def test_every_type_field_argument_and_value_is_documented() -> None:
    assert undocumented() == []


def test_each_mirrored_enum_pair_has_the_same_members() -> None:
    pairs = {graphql_enum.__name__: db_enum.__name__ for graphql_enum, db_enum in MIRRORED.items()}
    assert pairs == {
        "UserErrorCode": "Code",
        "KycVerificationStatus": "KycStatus",
        "KycVerificationType": "KycType",
        "CustomerOrderField": "OrderField",
        "OrderDirection": "Direction",
        "CustomerEventType": "EventType",
        "WebhookDeliveryStatus": "DeliveryStatus",
    }
    for graphql_enum, db_enum in MIRRORED.items():
        assert [m.name for m in graphql_enum] == [m.name for m in db_enum], graphql_enum
        assert [mirror(mirror(m, graphql_enum), db_enum) for m in db_enum] == list(db_enum)


ID = "external_customer_id"


@pytest.mark.parametrize(
    ("mutation", "fields"),
    [
        ("createCustomer", (ID, *rules.DATA_FIELDS)),
        ("updateCustomer", (ID, *rules.DATA_FIELDS)),
        ("deleteCustomer", (ID,)),
        ("startKycVerification", (ID,)),
        ("recordKycResult", ("verification_id",)),
        ("reviewKycVerification", ("verification_id",)),
    ],
)
def test_problem_fields_become_input_paths_that_exist(
    mutation: str, fields: tuple[str, ...]
) -> None:
    """Every field a db write can name in a problem is a real path into the mutation's input."""
    arguments = schema._schema.mutation_type.fields[mutation].args  # type: ignore[union-attr]
    for field in fields:
        argument, *inside = input_path(field)
        type_ = get_named_type(arguments[argument].type)
        for name in inside:
            assert isinstance(type_, GraphQLInputObjectType), (field, name)
            type_ = get_named_type(type_.fields[name].type)
