"""Builds `schema`, the GraphQL schema that the server serves."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import strawberry.federation
from graphql import FieldNode, GraphQLError, ValidationRule
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.federation.schema import FederationAny
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from schema.analysis import Analyser, ApplyAnalysis
from schema.entities import check_representations
from schema.errors import HideSuggestions, MaskUnexpectedErrors, ReportOperation
from schema.ftv1 import TracedSchema
from schema.limits import Limits
from schema.roots import Mutation, Query, Subscription
from schema.scalars import DateTime
from schema.types import Customer, KycVerification


class Schema(TracedSchema, strawberry.federation.Schema):
    # Set by build_schema: every request's document analysis, cached (schema/analysis.py).
    analyser: Analyser

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # One answer is never a subscription's: those stream, over WebSocket (`subscribe`).
        # Allowed here, graphql-core would run the subscription field as a query and fail.
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed - {OperationType.SUBSCRIPTION},
            operation_extensions,
        )

    def entities_resolver(
        self, info: strawberry.Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        check_representations(representations)  # all of them, before any is looked up
        return super().entities_resolver(info, representations)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors in a client's request are the client's to read, not server faults to log;
        # unexpected ones are logged, with an error id, where they are masked.
        return None


class NoServiceSdl(ValidationRule):
    """`_service { sdl }` hands out the whole schema, as introspection does: off with it."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value == "_service":
            self.report_error(
                GraphQLError(
                    "The _service field is off, as introspection is: the subgraph's SDL "
                    "is handed to gateways apart from the API (customer-api export-schema).",
                    nodes=[node],
                )
            )


def build_schema(limits: Limits | None = None, introspection: bool = True) -> Schema:
    """The schema with the request limits and the introspection setting in force.

    Parsing, validation, limits, scopes and cost all come from one cached analysis of each
    document (`schema.analyser`); introspection off is more validation rules there.
    """
    built: Schema  # the analyser needs the built schema; requests come after it is set
    extensions: list[Any] = [
        ReportOperation,
        lambda: ApplyAnalysis(built.analyser),
    ]
    rules: list[type[ValidationRule]] = []
    if not introspection:
        extensions.append(HideSuggestions)
        rules += [NoSchemaIntrospectionCustomRule, NoServiceSdl]
    built = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Listed so that entities reachable only through _entities never drop out of the schema.
        types=[Customer, KycVerification],
        extensions=[*extensions, MaskUnexpectedErrors],
        config=StrawberryConfig(scalar_map={datetime: DateTime}),
        federation_version="2.11",
    )
    built.analyser = Analyser(built._schema, limits or Limits(), rules=rules)
    return built


# The schema with the default settings: what graphql/schema.graphql holds.
schema = build_schema()
