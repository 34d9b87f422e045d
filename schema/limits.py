"""Limits on what one request may ask for, all checked before any resolver runs.

Tokens bound the parser's work. Depth, aliases, directives and the comparisons that
graphql-core's overlap check would make (quadratic in the fields of a selection set that
share a response name) are checked on the parsed document before validation starts. The
cost is computed from the document and its variables (page sizes multiply what they
contain) just before execution, and reported in `extensions.cost` of every response that
ran. The document analysis (`schema/analysis.py`) measures all of them in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import GraphQLError

TOO_COMPLEX = "QUERY_TOO_COMPLEX"


@dataclass(frozen=True)
class Limits:
    """Each a setting; the defaults leave room for every real client, GraphiQL included."""

    max_depth: int = 15  # GraphiQL's introspection query is 13 deep
    max_aliases: int = 30
    max_directives: int = 50
    max_tokens: int = 5_000
    max_cost: int = 10_000  # a page of 100 customers with their verifications costs ~2,400
    # Comparisons of fields sharing a response name that validation may have to make (see
    # repeats_error): the work of graphql-core's overlap check, bounded before it starts.
    max_comparisons: int = 10_000
    list_estimate: int = 5  # how many verifications a customer is assumed to have


# What multiplies the cost of what is inside a field, by schema coordinate (a test checks
# that each names a field of the schema).
# A page of `first` or `last` rows.
PAGED_FIELDS = frozenset({"Query.customers", "Query.customerEvents", "WebhookEndpoint.deliveries"})
ROW_FIELDS = frozenset({"CustomerConnection.edges", "CustomerConnection.nodes"})  # once a row
ESTIMATED_LISTS = frozenset({"Customer.kycVerifications"})  # `list_estimate` of them
REPRESENTATION_LISTS = frozenset({"Query._entities"})  # one per representation


def too_complex(message: str) -> GraphQLError:
    """A refusal for a request past a limit; the message says what to change."""
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


def depth_error(depth: int, limits: Limits) -> GraphQLError:
    return too_complex(
        f"The query is {depth} fields deep; at most {limits.max_depth} are allowed. "
        "Ask for less nesting."
    )


def aliases_error(aliases: int, limits: Limits) -> GraphQLError:
    return too_complex(
        f"The document uses {aliases} aliases; at most {limits.max_aliases} are allowed. "
        "Ask for fewer aliased fields, or send several requests."
    )


def directives_error(directives: int, limits: Limits) -> GraphQLError:
    return too_complex(
        f"The document uses {directives} directives; at most {limits.max_directives} are "
        "allowed. Use fewer @include and @skip."
    )


def repeats_error(
    comparisons: int, name: str, repeats: int, parent: str, limits: Limits
) -> GraphQLError:
    return too_complex(
        f"The document repeats fields so often that checking they can be merged would take "
        f"about {comparisons} comparisons; at most {limits.max_comparisons} are allowed. "
        f"Most of them come from '{name}', asked for {repeats} times in one selection set "
        f"on {parent} (fragments included). Select each field once."
    )


def cost_error(cost: int, limits: Limits) -> GraphQLError:
    return too_complex(
        f"The query would cost {cost}; at most {limits.max_cost} is allowed. "
        "Ask for smaller pages or fewer fields."
    )
