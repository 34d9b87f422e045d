"""Builds `schema`, the GraphQL schema that the server serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry.federation
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.access import RequireScopes
from schema.errors import ExplainAbortedValidation, HideSuggestions, MaskUnexpectedErrors
from schema.limits import Limits
from schema.limits import extensions as limit_extensions
from schema.roots import Mutation, Query
from schema.scalars import DateTime
from schema.types import Customer, KycVerification


class Schema(strawberry.federation.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors in a client's request are the client's to read, not server faults to log;
        # unexpected ones are logged, with an error id, where they are masked.
        return None


def build_schema(limits: Limits | None = None, introspection: bool = True) -> Schema:
    """The schema with the request limits and the introspection setting in force."""
    extensions: list[Any] = [
        RequireScopes,
        ExplainAbortedValidation,
        *limit_extensions(limits or Limits()),
    ]
    if not introspection:
        extensions += [DisableIntrospection, HideSuggestions]
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
