"""The compiled path: the customer queries and writes answered from a plan compiled once per
document.

graphql-core executes a document field by field: a resolver call, a Strawberry wrapper and
a completion step for every field of every customer, and an ORM row for each. For the
documents clients send most (a customer by id, any object by its global id, a page of
customers), `CompiledPath.answer` does instead what that execution would amount to: one
statement on the driver (db/customer_rows.py) and one generated function that builds the
response in selection order (plan.py). Whose record a principal may touch, and whose
personal data it may see, are schema/access.py's `own_customer` and `shows_personal_data`,
as for the resolvers: a customers:self token gets its own record and null for any other,
and a request whose personal fields might show another customer's to it (a write's payload,
say) is left to the resolvers, decided before anything is written. The customer and KYC
writes run their mutation's one write body (schema/customer_mutations.py,
schema/kyc_mutations.py: the resolvers run the same) and build the payload from its
outcome.

`answer` returns None for anything it does not cover, or any request that graphql-core
would answer with an error (a refused document or key, a variable or input that does not
coerce, a bad cursor, a page size out of range), and raises on a sick database: the gate
(gate.py, the view's one call) then has Strawberry run the request as usual, so every error
is graphql-core's. The same
cached analysis (schema/analysis.py) gives both paths their validation, limits, scopes and
cost.

A write that fails on a sick database before its commit has written nothing, and
graphql-core runs it again (and reports the failure). One whose commit itself failed may
have been written: graphql-core's run then finds the customer there (createCustomer
reports the id TAKEN, updateCustomer changes nothing more), which is what the client of
either path has to assume of a failed commit anyway.

tests/test_compiled.py proves the two paths answer byte for byte the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from graphql import GraphQLError, GraphQLSchema

from db import kyc
from db.customer_rows import CustomerReads, CustomerRow, after_key, cursor_of
from db.keys import Principal, Scope
from db.models import KycStatus, KycType
from db.pages import PageError
from db.rules import DATA_FIELDS
from schema import customer_mutations, ids, kyc_mutations
from schema.access import own_customer, shows_personal_data
from schema.analysis import Analyser, Analysis, cost_extension
from schema.compiled.plan import (
    DATA_COLUMNS,
    MISSING,
    NULL_ONLY_ARGUMENTS,
    Needs,
    Plan,
    Root,
    argument,
    compile_plan,
    input_argument,
)
from schema.compiled.selection import Unsupported
from schema.context import AppState, Writer
from schema.customer_list import first_page_size
from schema.kyc_mutations import DECISIONS
from schema.text_input import variable_errors

_KYC_WRITES = {"startKycVerification", "recordKycResult", "reviewKycVerification"}
_DECISIONS = {decision.name: status for decision, status in DECISIONS.items()}


class Answer(NamedTuple):
    """The compiled path's response, and what the access log says of the operation."""

    payload: dict[str, Any]
    operation_type: str  # "query" or "mutation"
    operation_name: str | None


class CompiledPath:
    def __init__(
        self,
        analyser: Analyser,
        schema: GraphQLSchema,
        state: AppState,
    ) -> None:
        self.analyser = analyser
        self.schema = schema
        self.state = state
        self.reads = CustomerReads(state.db)

    def plan(self, analysis: Analysis, name: str | None) -> Plan | None:
        """The plan of an analysed document, or None when the compiled path does not cover
        it; made once, and kept in the analysis (so the analysis cache bounds it too)."""
        if "plan" not in analysis.derived:
            assert analysis.document is not None
            try:
                analysis.derived["plan"] = compile_plan(self.schema, analysis.document, name)
            except Unsupported:
                analysis.derived["plan"] = None
        plan: Plan | None = analysis.derived["plan"]
        return plan

    async def answer(
        self, text: str, name: str | None, given: dict[str, Any] | None, principal: Principal
    ) -> Answer | None:
        """The answer to the operation `name` of the document `text` with the variables
        `given`, when the compiled path covers it; None for graphql-core to answer it."""
        analysis = self.analyser.analyse(text, name)
        if analysis.document is None:
            return None
        cost = analysis.admitted_cost(principal.scopes, given)
        if cost is None:
            return None
        if analysis.unstorable or (given and variable_errors(given)):
            return None  # strings no column stores: refused with graphql-core's errors
        plan = self.plan(analysis, name)
        if plan is None:
            return None
        try:
            values = plan.coerce(given or {})
            built = plan.for_conditions(values)
            run = _Run(self, values, principal)
            data = {
                root.key: await run.root(root, build, needs) for root, build, needs in built.roots
            }
        except (Unsupported, PageError):
            return None
        operation = plan.operation.name.value if plan.operation.name else None
        # throttleStatus is the view's to fill in (web/rate_limits.py), as for graphql-core.
        extensions = {"cost": cost_extension(cost, cost, None)}
        payload = {"data": data, "extensions": extensions}
        return Answer(payload, plan.operation.operation.value, operation)


class _Run:
    """One request's run of a plan: its variables, its one reading of the clock, and which
    customer it may read (`own`, as `access.own_customer` says: None for any)."""

    def __init__(
        self,
        path: CompiledPath,
        values: Mapping[str, Any],
        principal: Principal,
    ) -> None:
        self.path = path
        self.reads = path.reads
        self.values = values
        self.now, self.ttl = path.state.clock(), path.state.kyc_ttl
        self.cursor_secret = path.state.cursor_secret
        self.principal = principal
        self.own = own_customer(principal, Scope.CUSTOMERS_READ)

    async def root(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        if root.kind == "__typename":
            return build()
        if root.kind == "customer":
            return await self.customer(root, build, needs)
        if root.kind == "node":
            return await self.node(root, build, needs)
        if root.kind == "customers":
            return await self.page(root, build, needs)
        return await self.write(root, build, needs)

    async def write(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """A customer or KYC write: the body its resolver runs, and its payload."""
        given = input_argument(self.path.schema, root.kind, root.arguments["input"], self.values)
        # A KYC result or review names a verification, whose customer is not known before the
        # write: its payload's personal fields are shown by the resolvers, or refused by them.
        subject = given.get("externalCustomerId")
        if needs.personal and not shows_personal_data(self.principal, subject):
            raise Unsupported("personal data this principal may not see, maybe")
        path, now, ttl = self.path, self.now, self.ttl
        writer = Writer(self.reads.db, self.principal, path.state.environment, now, ttl)
        if root.kind in _KYC_WRITES:
            if root.kind == "startKycVerification":
                kind = KycType[given["type"]]
                verified = await kyc_mutations.start(writer, given["externalCustomerId"], kind)
            else:
                if root.kind == "recordKycResult":
                    target, actor = KycStatus[given["status"]], kyc.Actor.PROVIDER
                else:
                    target, actor = _DECISIONS[given["decision"]], kyc.Actor.REVIEWER
                try:
                    verified = await kyc_mutations.transition(
                        writer, given["verificationId"], target, actor
                    )
                except GraphQLError:  # before anything is read
                    raise Unsupported("an id past the largest key (a BAD_USER_INPUT)") from None
            customer = None if verified.customer is None else CustomerRow(verified.customer)
            return build(customer, verified.verification, verified.problems, [], now, ttl)
        external_id = given["externalCustomerId"]
        if root.kind == "deleteCustomer":
            problems = await customer_mutations.delete(writer, external_id)
            return build(None if problems else external_id, None, problems, [], now, ttl)
        data = given["data"]
        # Absent fields are left out: a patch keeps them, a new customer's default is null.
        fields = {name: data[camel] for camel, name in DATA_COLUMNS.items() if camel in data}
        if root.kind == "createCustomer":
            values = {name: fields.get(name) for name in DATA_FIELDS}
            outcome = await customer_mutations.create(writer, external_id, values)
        else:
            outcome = await customer_mutations.update(writer, external_id, fields)
        written = None if outcome.customer is None else CustomerRow(outcome.customer)
        return build(written, None, outcome.problems, outcome.warnings, now, ttl)

    async def customer(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """`Query.customer`: null for another customer than a customers:self token's own."""
        external_id = argument(root.arguments["externalCustomerId"], self.values, str)
        if not isinstance(external_id, str):
            raise Unsupported("no externalCustomerId")  # graphql-core's error
        if self.own not in (None, external_id):
            return None
        found = await self.reads.by_external_id(external_id, needs.verifications)
        return None if found is None else build(found, self.now, self.ttl)

    async def node(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """`Query.node`: a customer or a verification by its global id, else null."""
        global_id = argument(root.arguments["id"], self.values, str)
        if not isinstance(global_id, str):
            raise Unsupported("no id")  # graphql-core's error
        try:
            decoded = ids.decode(global_id)
        except GraphQLError:
            raise Unsupported("an id past the largest key (a BAD_USER_INPUT)") from None
        if decoded is not None and decoded[0] == "Customer":
            customer = await self.reads.by_id(decoded[1], needs.verifications)
            if customer is None or self.own not in (None, customer.row.external_customer_id):
                return None
            return build(customer, None, self.now, self.ttl)
        if decoded is not None and decoded[0] == "KycVerification":
            if self.own is not None:
                raise Unsupported("a verification for a customers:self token (its owner)")
            verification = await self.reads.verification(decoded[1])
            return None if verification is None else build(None, verification, self.now, self.ttl)
        return None

    async def page(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """`Query.customers` in the default order, from its first page or after a cursor."""
        if self.own is not None:
            raise Unsupported("a list without customers:read (FORBIDDEN)")
        values = self.values
        for name in NULL_ONLY_ARGUMENTS["customers"]:
            if name in root.arguments and argument(root.arguments[name], values, None) not in (
                None,
                MISSING,
            ):
                raise Unsupported(f"customers({name}:)")
        first = _first(root.arguments.get("first"), values)
        after = root.arguments.get("after")
        cursor = None if after is None else argument(after, values, str)
        if cursor is MISSING:
            cursor = None
        if not isinstance(cursor, str | None):
            raise Unsupported("an after that is not a string")
        secret = self.cursor_secret
        key = None if cursor is None else after_key(cursor, secret)
        rows, more = await self.reads.newest_first(first, key, needs.verifications)
        signed = [cursor_of(r.row, secret) for r in rows] if needs.cursors else None
        total = await self.reads.count() if needs.total else None
        return build(rows, more, cursor, signed, total, self.now, self.ttl)


def _first(node: Any, values: Mapping[str, Any]) -> int:
    """The page size, as `Query.customers` reads `first` (`page_sizes`); Unsupported where it
    refuses it."""
    first = None if node is None else argument(node, values, int)
    if first is MISSING:
        first = None
    if not isinstance(first, int | None):
        raise Unsupported("a page size that is not an Int")
    try:
        return first_page_size(first)
    except GraphQLError:
        raise Unsupported("a page size the field refuses") from None
