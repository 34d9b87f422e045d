"""Which scope each root field needs, checked for the whole operation before anything runs.

One table, so a new root field cannot be forgotten: a field missing from it needs a scope no
key has (a test keeps the table complete). An operation that asks for any field its key may
not use is refused whole, with a FORBIDDEN error for each such field: nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from db.keys import Scope
from schema.documents import fragments_of, operations_of

FORBIDDEN = "FORBIDDEN"

ROOT_FIELD_SCOPES: Mapping[str, Scope] = {
    "node": Scope.CUSTOMERS_READ,
    "customer": Scope.CUSTOMERS_READ,
    "customers": Scope.CUSTOMERS_READ,
    # Federation: _entities hands out customers by key, and the SDL maps the whole API.
    "_entities": Scope.CUSTOMERS_READ,
    "_service": Scope.CUSTOMERS_READ,
    "createCustomer": Scope.CUSTOMERS_WRITE,
    "updateCustomer": Scope.CUSTOMERS_WRITE,
    "deleteCustomer": Scope.CUSTOMERS_WRITE,
    "startKycVerification": Scope.CUSTOMERS_WRITE,
    "recordKycResult": Scope.KYC_PROVIDER,
    "reviewKycVerification": Scope.KYC_REVIEW,
}
# customers:self (a signed-in customer's token) reaches these, and through them its own record
# only: the resolvers answer NOT_FOUND for any other customer (Context.own_customer).
SELF_ROOT_FIELDS = frozenset({"customer", "node", "updateCustomer", "startKycVerification"})
# Introspection describes the schema, not the data: any valid key may use it.
OPEN_FIELDS = frozenset({"__typename", "__schema", "__type"})


class RequireScopes(SchemaExtension):
    """Refuse an operation whose root fields need scopes that the request's key lacks."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        granted = principal.scopes if principal is not None else frozenset()
        operation = context.operation_name
        document = context.graphql_document
        errors = []
        if document is not None:
            fragments = fragments_of(document)
            for definition in operations_of(document, operation):
                for field in _root_fields(definition.selection_set, fragments):
                    name = field.name.value
                    if name in OPEN_FIELDS:
                        continue
                    needed = ROOT_FIELD_SCOPES.get(name)
                    if Scope.CUSTOMERS_SELF in granted and name in SELF_ROOT_FIELDS:
                        continue
                    if needed is None or needed not in granted:
                        errors.append(_forbidden(field, needed))
        if errors:
            context.result = GraphQLExecutionResult(data=None, errors=errors)
        yield


def _root_fields(
    selections: SelectionSetNode, fragments: Mapping[str, SelectionSetNode]
) -> Iterator[FieldNode]:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            spread = fragments.get(selection.name.value)
            if spread is not None:
                yield from _root_fields(spread, fragments)


def _forbidden(field: FieldNode, needed: Scope | None) -> GraphQLError:
    key = field.alias.value if field.alias else field.name.value
    reason = f"the {needed} scope" if needed else "a scope that no key has"
    return GraphQLError(
        f"Your API key may not use {field.name.value}: it needs {reason}.",
        nodes=[field],
        path=[key],
        extensions={"code": FORBIDDEN},
    )
