"""Builds `schema`, the GraphQL schema that the server serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry.federation
from graphql import FieldNode, GraphQLError, ValidationRule
from strawberry.extensions import AddValidationRules, DisableIntrospection
from strawberry.federation.schema import FederationAny
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.access import RequireScopes
from schema.entities import check_representations
from schema.errors import (
    ExplainAbortedValidation,
    ExplainUnreadableNumbers,
    HideSuggestions,
    MaskUnexpectedErrors,
)
from schema.limits import Limits
from schema.limits import extensions as limit_extensions
from schema.roots import Mutation, Query
from schema.scalars import DateTime
from schema.text_input import RefuseUnstorableText
from schema.types import Customer, KycVerification


class Schema(strawberry.federation.Schema):
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
                    "is handed to gateways apart from the API (python server.py export-schema).",
                    nodes=[node],
                )
            )


class DisableServiceSdl(AddValidationRules):
    def __init__(self) -> None:
        super().__init__([NoServiceSdl])


def build_schema(limits: Limits | None = None, introspection: bool = True) -> Schema:
    """The schema with the request limits and the introspection setting in force."""
    extensions: list[Any] = [
        RequireScopes,
        ExplainAbortedValidation,
        ExplainUnreadableNumbers,
        *limit_extensions(limits or Limits()),
        RefuseUnstorableText,
    ]
    if not introspection:
        extensions += [DisableIntrospection, HideSuggestions, DisableServiceSdl]
    return Schema(
        query=Query,
        mutation=Mutation,
        # Listed so that entities reachable only through _entities never drop out of the schema.
        types=[Customer, KycVerification],
        extensions=[*extensions, MaskUnexpectedErrors],
        config=StrawberryConfig(scalar_map={datetime: DateTime}),
        federation_version="2.11",
    )


# The schema with the default settings: what graphql/schema.graphql holds.
schema = build_schema()
