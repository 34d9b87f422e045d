"""The compiled path: the customer queries and writes answered from a plan compiled once per
document.

graphql-core executes a document field by field: a resolver call, a Strawberry wrapper and a
completion step for every field of every customer, and an ORM row for each. For the
documents clients send most (a customer by id, any object by its global id, a page of
customers or of the event feed), `CompiledPath.answer` does instead what that execution
would amount to: one statement on the driver (db/customer_rows.py, db/event_rows.py) and one
generated function that builds the response in selection order (plan.py). Whose record a
principal may touch, and whose personal data it may see, are schema/access.py's
`own_customer` and `shows_personal_data`, as for the resolvers: a customers:self token gets
its own record and null for any other, and a request whose personal fields might show
another customer's to it (a write's payload, say) is left to the resolvers, decided before
anything is written. The customer and KYC writes run their mutation's one write body
(schema/customer_mutations.py, schema/kyc_mutations.py: the resolvers run the same) and
build the payload from its outcome.

`answer` returns None for anything it does not cover, or any request that graphql-core
would answer with an error (a refused document or key, a variable or input that does not
coerce, a bad cursor, a page size out of range), and raises when a read meets a sick
database: the gate (gate.py, the view's one call) then has Strawberry run the request as
usual, so every error is graphql-core's. The same cached analysis (schema/analysis.py)
gives both paths their validation, limits, scopes and cost.

A write that fails once it has begun (on a sick database, say) is answered here, with the
error graphql-core would give (SERVICE_UNAVAILABLE, or a masked internal error, reported
alike), and never run again: a write whose commit failed may have been stored, and a run of
it by graphql-core would report the client's own new customer TAKEN, or wait out a held lock
a second time.

tests/test_compiled.py proves the two paths answer byte for byte the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from graphql import GraphQLError, GraphQLSchema
from strawberry.utils.str_converters import to_snake_case

from db import customers, kyc
from db.customer_rows import CustomerReads
from db.event_rows import EventReads
from db.events import FEED
from db.keys import Principal, Scope
from db.models import KycStatus, KycType
from db.pages import PageError, keyset
from db.rules import DATA_FIELDS
from schema import customer_mutations, ids, kyc_mutations
from schema.access import own_customer, shows_personal_data
from schema.analysis import Admission, Analyser, Analysis, admission, cost_extension
from schema.compiled.plan import (
    DATA_COLUMNS,
    MISSING,
    Needs,
    Plan,
    Root,
    argument,
    compile_plan,
    input_argument,
    input_value,
)
from schema.compiled.selection import Unsupported
from schema.compiled.trace import traced
from schema.context import AppState, Writer
from schema.customer_list import (
    CustomerFilter,
    CustomerOrder,
    CustomerOrderField,
    OrderDirection,
    first_page_size,
    ordering_of,
    page_sizes,
)
from schema.errors import report
from schema.events import CustomerEventFilter, CustomerEventType
from schema.fields import Deleted
from schema.ftv1 import Recorder
from schema.kyc_mutations import DECISIONS
from schema.text_input import variable_errors
from schema.types import KycVerificationStatus

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
        self.event_reads = EventReads(state.db)

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
        self,
        text: str,
        name: str | None,
        given: dict[str, Any] | None,
        principal: Principal,
        trace: Recorder | None = None,
        admitted: Admission | None = None,
    ) -> Answer | None:
        """The answer to the operation `name` of the document `text` with the variables
        `given`, when the compiled path covers it; None for graphql-core to answer it. With
        `trace`, its federated trace in `extensions.ftv1`. `admitted`: this very operation's
        admission for `principal`, when the caller has it (schema/analysis.py)."""
        if admitted is None:
            admitted = admission(self.analyser, principal.scopes, text, name, given)
        if admitted is None or admitted.cost is None:
            return None  # graphql-core's refusal, or its to answer
        analysis, cost = admitted.analysis, admitted.cost
        if analysis.unstorable or (given and variable_errors(given)):
            return None  # strings no column stores: refused with graphql-core's errors
        plan = self.plan(analysis, name)
        if plan is None:
            return None
        operation = plan.operation.name.value if plan.operation.name else None
        kind = plan.operation.operation.value
        # throttleStatus is the view's to fill in (web/rate_limits.py), as for graphql-core.
        extensions: dict[str, Any] = {"cost": cost_extension(cost, cost, None)}
        try:
            values = plan.coerce(given or {})
            built = plan.for_conditions(values)
            run = _Run(self, values, principal)
            try:
                if trace is None:
                    data = {
                        root.key: await run.root(root, build, needs)
                        for root, build, needs in built.roots
                    }
                else:  # a gateway's federated trace (trace.py: what the compiled path can time)
                    data = await traced(run, plan, values, built.roots, trace)
            except (Unsupported, PageError):
                raise  # declined before anything was written
            except Exception as error:
                if not plan.writes:
                    raise
                # A plan's one write failed once begun. Its payload is non-null (plan.py takes
                # no other): its null takes `data` with it.
                (write,) = [root for root, _, _ in built.roots if root.kind != "__typename"]
                data, errors = None, [_failed(write, error)]
            else:
                errors = []
        except (Unsupported, PageError):
            return None
        if trace is not None:
            extensions["ftv1"] = trace.finish()
        payload = {"data": data, "errors": errors, "extensions": extensions}
        if not errors:
            del payload["errors"]
        return Answer(payload, kind, operation)


def _failed(root: Root, error: Exception) -> dict[str, Any]:
    """A write's failure (SERVICE_UNAVAILABLE for a sick database, else an internal error),
    reported and shown as graphql-core shows it (schema/errors.py's MaskUnexpectedErrors)."""
    failure = report(error, root.key)
    extensions = {"code": failure.code, "errorId": failure.error_id}
    error = GraphQLError(failure.message, nodes=[root.node], path=[root.key], extensions=extensions)
    return dict(error.formatted)


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
        if root.kind == "customerEvents":
            return await self.events(root, build, needs)
        return await self.write(root, build, needs)

    async def write(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """A customer or KYC write: the body its resolver runs, and its payload built from
        its outcome, as the resolvers' payload is (schema/fields.py)."""
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
            return build(verified, now, ttl)
        external_id = given["externalCustomerId"]
        if root.kind == "deleteCustomer":
            problems = await customer_mutations.delete(writer, external_id)
            return build(Deleted(external_id, problems), now, ttl)
        data = given["data"]
        # Absent fields are left out: a patch keeps them, a new customer's default is null.
        fields = {name: data[camel] for camel, name in DATA_COLUMNS.items() if camel in data}
        if root.kind == "createCustomer":
            values = {name: fields.get(name) for name in DATA_FIELDS}
            outcome = await customer_mutations.create(writer, external_id, values)
        else:
            outcome = await customer_mutations.update(writer, external_id, fields)
        return build(outcome, now, ttl)

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
        """`Query.customers`: any filter and order, forward or backward from a cursor, read
        and paged as the resolver reads them (its helpers, customers.conditions, pages)."""
        if self.own is not None:
            raise Unsupported("a list without customers:read (FORBIDDEN)")
        first = self._int(root, "first")
        last = self._int(root, "last")
        after, before = self._string(root, "after"), self._string(root, "before")
        where = self._input(root, "filter")
        order = self._input(root, "orderBy")
        try:
            first, last = page_sizes(first, last)
            where_db = (None if where is None else _customer_filter(where)) or CustomerFilter()
            ordering = ordering_of(None if order is None else _customer_order(order))
            db_filter = where_db.to_db()
        except GraphQLError:
            raise Unsupported("a page size or filter the field refuses") from None
        secret = self.cursor_secret
        page = keyset(ordering, first=first, after=after, last=last, before=before, secret=secret)
        sql = customers.conditions(db_filter, self.now, self.ttl)
        found = await self.reads.page(
            sql, ordering, page, needs.verifications, secret, needs.cursors
        )
        total = await self.reads.count(sql) if needs.total else None
        return build(found, None, total, self.now, self.ttl)

    async def events(self, root: Root, build: Callable[..., Any], needs: Needs) -> Any:
        """`Query.customerEvents`: a page of the feed, as the resolver reads it."""
        first = self._int(root, "first")
        after = self._string(root, "after")
        where = self._input(root, "filter")
        try:
            size = first_page_size(first)
        except GraphQLError:
            raise Unsupported("a page size the field refuses") from None
        types = None if where is None else where.get("types")
        event_filter = CustomerEventFilter(
            types=None if types is None else [CustomerEventType[name] for name in types],
            external_customer_id=None if where is None else where.get("externalCustomerId"),
        )
        secret = self.cursor_secret
        page = keyset(FEED, first=size, after=after, last=None, before=None, secret=secret)
        reads = self.path.event_reads
        if page.after is not None and page.after[0] < await reads.pruned_through():
            raise Unsupported("a pruned cursor (a BAD_USER_INPUT)")
        found = await reads.page(event_filter.to_db(), page, secret, needs.event_verifications)
        return build(found, after, None, self.now, self.ttl)

    def _int(self, root: Root, name: str) -> int | None:
        node = root.arguments.get(name)
        value = None if node is None else argument(node, self.values, int)
        if value is MISSING:
            return None
        if not isinstance(value, int | None) or isinstance(value, bool):
            raise Unsupported(f"a {name} that is not an Int")
        return value

    def _string(self, root: Root, name: str) -> str | None:
        node = root.arguments.get(name)
        value = None if node is None else argument(node, self.values, str)
        if value is MISSING:
            return None
        if not isinstance(value, str | None):
            raise Unsupported(f"a {name} that is not a String")
        return value

    def _input(self, root: Root, name: str) -> dict[str, Any] | None:
        """An input object argument, coerced (absent fields left out, defaults in)."""
        node = root.arguments.get(name)
        if node is None:
            return None
        value = input_value(self.path.schema, root.kind, name, node, self.values)
        return None if value is MISSING else value


def _customer_filter(given: Mapping[str, Any]) -> CustomerFilter:
    """A coerced `CustomerFilter` input as Strawberry makes it for the resolver."""
    values = {to_snake_case(name): value for name, value in given.items()}
    if values.get("kyc_status") is not None:
        values["kyc_status"] = [KycVerificationStatus[name] for name in values["kyc_status"]]
    return CustomerFilter(**values)


def _customer_order(given: Mapping[str, Any]) -> CustomerOrder:
    """A coerced `CustomerOrder` input as Strawberry makes it for the resolver."""
    return CustomerOrder(
        field=CustomerOrderField[given["field"]], direction=OrderDirection[given["direction"]]
    )
