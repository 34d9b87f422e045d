"""One definition per field of the customer and event types, from which both executors are made.

Each `Type.field` of `FIELDS` says what it reads from its source (a column, or what an
executor reads beside the row: a customer's verifications, a page's cursors, an event's own
cursor and its verification), how its value is made (a column as stored, one function of
the source and the request's clock, or the source itself seen as another type), and, by
`schema/access.py`'s `PERSONAL_FIELDS`, whether it is personal data that
`guard_personal_data` shows only to a principal that may see it.
A value is in the db layer's terms (its enums, datetimes): how it is shown follows from the
field's GraphQL type, which `schema/types.py` and its siblings declare with the description.

- Strawberry's resolvers are `field(coordinate, description=...)`: one resolver per field,
  made from its definition here (`schema/types.py`, the payloads, `PageInfo`,
  `schema/events.py`'s `CustomerEvent`).
- The compiled path's builders are generated from the same definitions
  (`schema/compiled/plan.py`): a column becomes an attribute access in the generated code, a
  function is called through the code's namespace, and the type says how a value is shown.

So a rule about a field's value (a PENDING verification shows as EXPIRED after its time to
live, a payload shows the sandbox's warnings) is written once, here or in the db function
that a definition calls, and a field added here is answered by both executors.

The sources, by type: `Customer` and `CustomerData` a customer row (`models.Customer`, or a
row the compiled path read: the same column names); `KycVerification` a verification row;
`PageInfo` a `PageEnds`; `UserError` and `UserWarning` a `rules.Problem`; a customer write's
payload its `customers.CustomerOutcome`, a delete's a `Deleted`, a KYC write's its
`kyc.VerificationOutcome`; `CustomerEvent` an event row (`models.CustomerEvent`, or the
compiled path's: the same column names). `CustomerEvent.customer` alone is not defined here:
a resolver of its own (schema/events.py) that the compiled path declines.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

import strawberry
from strawberry.utils.str_converters import to_camel_case

from db import events, kyc, rules
from db.models import KycStatus
from schema import ids
from schema.access import PERSONAL_FIELDS, guard_personal_data
from schema.context import Info
from schema.loaders import Loaders
from schema.translate import MIRRORED, changed_fields, input_path

# A value made from the source, the request's one reading of the clock, and the KYC ttl.
Make = Callable[[Any, datetime, timedelta], Any]


class Need(enum.Enum):
    """What a field reads besides its source's columns; each executor reads it its own way."""

    # A customer's verifications, oldest first: the loader `verifications_of` for the
    # resolvers, the compiled path's statement with a JOIN.
    VERIFICATIONS = "verifications"
    # The cursors of a page's rows, signed (db/pages.py).
    CURSORS = "cursors"
    # An event's own cursor in the feed: `events.cursor_of` for the resolvers (a subscription
    # has no page), the page's cursor of its row for the compiled path.
    EVENT_CURSOR = "event cursor"
    # An event's verification as it is now (None once deleted): the loader `verification`
    # for the resolvers, the compiled path's statement with a JOIN.
    EVENT_VERIFICATION = "event verification"


@dataclass(frozen=True)
class Field:
    """How one field gets its value from its source: the `column` as stored, or `make` of
    the source and the clock, or the global id of the `node` type for the source's id, or
    what the executor read for `reads`, or (none of these) the source itself. `of` names
    the object type the value is shown as, for object fields; `needs` what the executor
    must read for it."""

    column: str | None = None
    make: Make | None = None
    node: str | None = None  # or the global id of this type for the source's `id`
    reads: Need | None = None
    of: str | None = None
    needs: frozenset[Need] = frozenset()


def column(name: str, of: str | None = None) -> Field:
    return Field(column=name, of=of)


def made(make: Make, *needs: Need) -> Field:
    return Field(make=make, needs=frozenset(needs))


def read(need: Need, of: str | None = None) -> Field:
    """The value is what the executor read beside the source for `need` (shown as `of`)."""
    return Field(reads=need, of=of, needs=frozenset({need}))


class PageEnds(NamedTuple):
    """Where a page lies: what `PageInfo` shows."""

    has_next: bool
    has_previous: bool
    cursors: Sequence[str] | None  # None where no field asked for them
    empty_end: str | None = None  # where an empty page ends (the cursor it started after)


class Deleted(NamedTuple):
    """What deleteCustomer did: the customer it was asked to delete, and its problems."""

    external_customer_id: str
    problems: list[rules.Problem]


def _kyc_status(customer: Any, now: datetime, ttl: timedelta) -> KycStatus | None:
    """The status of the customer's newest verification, after expiry."""
    if customer.kyc_status is None:
        return None
    return kyc.effective_status(customer.kyc_status, customer.kyc_started_at, now, ttl)


def _status(verification: Any, now: datetime, ttl: timedelta) -> KycStatus:
    return kyc.effective_status(verification.status, verification.created_at, now, ttl)


def _start_cursor(ends: PageEnds, _now: datetime, _ttl: timedelta) -> str | None:
    return ends.cursors[0] if ends.cursors else None


def _end_cursor(ends: PageEnds, _now: datetime, _ttl: timedelta) -> str | None:
    return ends.cursors[-1] if ends.cursors else ends.empty_end


def _input_path(problem: rules.Problem, _now: datetime, _ttl: timedelta) -> list[str]:
    return input_path(problem.field)


def _deleted(deleted: Deleted, _now: datetime, _ttl: timedelta) -> str | None:
    return None if deleted.problems else deleted.external_customer_id


def _changed_fields(event: Any, _now: datetime, _ttl: timedelta) -> list[str]:
    return changed_fields(event.changed_fields)


# A problem as a UserError or a UserWarning shows it: the one conversion of problems.
_PROBLEM = {"field": made(_input_path), "message": column("message"), "code": column("code")}
# A customer write's payload, from its `customers.CustomerOutcome`: the sandbox's warnings too.
_CUSTOMER_PAYLOAD = {
    "customer": column("customer", of="Customer"),
    "userErrors": column("problems", of="UserError"),
    "warnings": column("warnings", of="UserWarning"),
}

FIELDS: Mapping[str, Mapping[str, Field]] = {
    "Customer": {
        "id": Field(node="Customer"),
        "externalCustomerId": column("external_customer_id"),
        "data": Field(of="CustomerData"),  # the same row
        "createdAt": column("created_at"),
        "updatedAt": column("updated_at"),
        "kycVerifications": read(Need.VERIFICATIONS, of="KycVerification"),
        "kycStatus": made(_kyc_status),
    },
    # CustomerData's fields are named as the table's columns (rules.DATA_FIELDS).
    "CustomerData": {to_camel_case(name): column(name) for name in rules.DATA_FIELDS},
    "KycVerification": {
        "id": Field(node="KycVerification"),
        "type": column("type"),
        "createdAt": column("created_at"),
        "status": made(_status),
        "updatedAt": made(kyc.effective_updated_at),
    },
    "PageInfo": {
        "hasNextPage": column("has_next"),
        "hasPreviousPage": column("has_previous"),
        "startCursor": made(_start_cursor, Need.CURSORS),
        "endCursor": made(_end_cursor, Need.CURSORS),
    },
    "UserError": _PROBLEM,
    "UserWarning": _PROBLEM,
    # The payloads, from the write's outcome.
    "CreateCustomerPayload": _CUSTOMER_PAYLOAD,
    "UpdateCustomerPayload": _CUSTOMER_PAYLOAD,
    "DeleteCustomerPayload": {
        "deletedExternalCustomerId": made(_deleted),
        "userErrors": column("problems", of="UserError"),
    },
    "KycVerificationPayload": {
        "verification": column("verification", of="KycVerification"),
        "customer": column("customer", of="Customer"),
        "userErrors": column("problems", of="UserError"),
    },
    # An event as it was recorded: its status is the one the change set, never expired since.
    "CustomerEvent": {
        "id": Field(node="CustomerEvent"),
        "cursor": read(Need.EVENT_CURSOR),
        "type": column("type"),
        "externalCustomerId": column("external_customer_id"),
        "status": column("status"),
        "previousStatus": column("previous_status"),
        "changedFields": made(_changed_fields),
        "actor": column("actor"),
        "occurredAt": column("occurred_at"),
        "verification": read(Need.EVENT_VERIFICATION, of="KycVerification"),
    },
}


def _external_id(customer: Any) -> str:
    return str(customer.external_customer_id)


# Whose record a personal field of a type shows: the source's customer.
OWNERS: Mapping[str, Callable[[Any], str]] = {
    "Customer": _external_id,
    "CustomerData": _external_id,
}


def definition(coordinate: str) -> Field:
    """The definition of `Type.field`; KeyError when there is none."""
    type_name, name = coordinate.split(".")
    return FIELDS[type_name][name]


def maker_name(coordinate: str) -> str:
    """The name the generated code calls a field's function by."""
    return "_make_" + coordinate.replace(".", "_")


MAKERS: dict[str, Make] = {
    maker_name(f"{type_name}.{name}"): field.make
    for type_name, fields in FIELDS.items()
    for name, field in fields.items()
    if field.make is not None
}


# -- Strawberry's resolvers ---------------------------------------------------------------------

# The Strawberry class of each type in FIELDS, which holds its source as `source`.
CLASSES: dict[str, type[Any]] = {}


def shown_as(type_name: str) -> Callable[[type[Any]], type[Any]]:
    """Declare the Strawberry class of `type_name`, made as `cls(source=...)`."""

    def register(cls: type[Any]) -> type[Any]:
        CLASSES[type_name] = cls
        return cls

    return register


@cache
def _twin(db_enum: type[enum.Enum]) -> type[enum.Enum]:
    (graphql_enum,) = (graphql for graphql, db in MIRRORED.items() if db is db_enum)
    return graphql_enum


def _shown(field: Field) -> Callable[[Any], Any]:
    """How Strawberry gets a value of the field: an object of its class, a GraphQL enum."""
    if field.of is not None:
        of = field.of

        def wrapped(value: Any) -> Any:
            cls = CLASSES[of]
            if value is None:
                return None
            if isinstance(value, list):
                return [cls(source=item) for item in value]
            return cls(source=value)

        return wrapped

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return _twin(type(value))[value.name]
        return value

    return plain


def loaders_for(root: Any, info: Info) -> Loaders:
    """The loaders a Strawberry object reads its related rows with: its own where it brings
    them (a subscription's event: fresh for each, so it shows its rows as they are now),
    else the request's."""
    own: Loaders | None = getattr(root, "loaders", None)
    return own or info.context.loaders


def field(coordinate: str, *, description: str) -> Any:
    """The Strawberry field of `coordinate` (its type is the class attribute's annotation),
    resolved by its definition in FIELDS, and guarded where it is personal data."""
    type_name, _name = coordinate.split(".")
    defined = definition(coordinate)
    shown = _shown(defined)
    owner = OWNERS.get(type_name) if coordinate in PERSONAL_FIELDS else None
    if coordinate in PERSONAL_FIELDS:
        assert owner is not None, f"{coordinate} is personal, but {type_name} has no owner"

    def guard(info: Info, source: Any) -> None:
        if owner is not None:
            guard_personal_data(info.context.principal, owner(source), coordinate)

    resolve: Callable[..., Any]
    if defined.reads is Need.VERIFICATIONS:

        async def verifications(root: Any, info: Info) -> Any:
            guard(info, root.source)
            rows = await loaders_for(root, info).verifications_of.load(root.source.id)
            return shown(rows)

        resolve = verifications
    elif defined.reads is Need.EVENT_VERIFICATION:

        async def verification(root: Any, info: Info) -> Any:
            guard(info, root.source)
            key = root.source.verification_id
            if key is None:
                return None
            return shown(await loaders_for(root, info).verification.load(key))

        resolve = verification
    elif defined.reads is Need.EVENT_CURSOR:

        def cursor(root: Any, info: Info) -> Any:
            guard(info, root.source)
            return events.cursor_of(root.source, info.context.cursor_secret)

        resolve = cursor
    elif defined.column is not None:
        name = defined.column

        def by_column(root: Any, info: Info) -> Any:
            guard(info, root.source)
            return shown(getattr(root.source, name))

        resolve = by_column
    elif defined.node is not None:
        node = defined.node

        def global_id(root: Any, info: Info) -> Any:
            guard(info, root.source)
            return ids.encode(node, root.source.id)

        resolve = global_id
    elif defined.make is not None:
        make = defined.make

        def by_function(root: Any, info: Info) -> Any:
            guard(info, root.source)
            context = info.context
            return shown(make(root.source, context.clock(), context.kyc_ttl))

        resolve = by_function
    else:

        def itself(root: Any, info: Info) -> Any:
            guard(info, root.source)
            return shown(root.source)

        resolve = itself
    resolve.__name__ = coordinate.replace(".", "_")
    setattr(resolve, "coordinate", coordinate)  # noqa: B010  # tests/test_fields.py reads it
    return strawberry.field(resolver=resolve, description=description)
