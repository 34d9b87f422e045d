"""The "products" subgraph of Apollo's federation compatibility suite, written with our stack.

The suite (@apollo/federation-subgraph-compatibility-tests) checks a subgraph that implements
its own test schema, not ours; this module implements that schema with Strawberry, the way
the customer API is built, so the suite measures the Federation support the API relies on.
Run: python -m tests.support.compat_products PORT  (0 picks a free port; uvicorn logs which)
"""

from __future__ import annotations

import sys
from typing import Any

import strawberry
import strawberry.federation
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.schema_directive import Location

from schema.ftv1 import Recorder, TracedSchema, asks_for_trace, recording


@strawberry.federation.schema_directive(
    locations=[Location.OBJECT],
    name="custom",
    compose=True,
    import_url="https://myspecs.dev/myCustomDirective/v1.0",
)
class Custom:
    pass


@strawberry.federation.type(shareable=True)
class ProductDimension:
    size: str | None
    weight: float | None
    unit: str | None = strawberry.federation.field(inaccessible=True)


@strawberry.type
class ProductVariation:
    id: strawberry.ID


@strawberry.type
class CaseStudy:
    case_number: strawberry.ID
    description: str | None


@strawberry.federation.type(keys=["study { caseNumber }"])
class ProductResearch:
    study: CaseStudy
    outcome: str | None = None

    @classmethod
    def resolve_reference(cls, **representation: Any) -> ProductResearch | None:
        number = representation["study"]["caseNumber"]
        return next((r for r in RESEARCH if r.study.case_number == number), None)


@strawberry.federation.type(keys=["email"], extend=True)
class User:
    email: strawberry.ID = strawberry.federation.field(external=True)
    name: str | None = strawberry.federation.field(override="users", default=None)
    total_products_created: int | None = strawberry.federation.field(external=True, default=None)
    years_of_employment: int = strawberry.federation.field(external=True, default=0)

    @strawberry.federation.field(requires=["totalProductsCreated yearsOfEmployment"])
    def average_products_created_per_year(self) -> int | None:
        if self.total_products_created is None or not self.years_of_employment:
            return None
        return round(self.total_products_created / self.years_of_employment)

    @classmethod
    def resolve_reference(cls, **representation: Any) -> User:
        return User(
            email=representation["email"],
            name="Jane Smith",
            total_products_created=representation.get("totalProductsCreated", 1337),
            years_of_employment=representation.get("yearsOfEmployment", 10),
        )


USER = User(
    email=strawberry.ID("support@apollographql.com"),
    name="Jane Smith",
    total_products_created=1337,
    years_of_employment=10,
)


@strawberry.federation.type(keys=["sku package"])
class DeprecatedProduct:
    sku: str
    package: str
    reason: str | None = None
    created_by: User | None = None

    @classmethod
    def resolve_reference(cls, **representation: Any) -> DeprecatedProduct | None:
        match = (DEPRECATED.sku, DEPRECATED.package)
        return DEPRECATED if (representation["sku"], representation["package"]) == match else None


DEPRECATED = DeprecatedProduct(
    sku="apollo-federation-v1",
    package="@apollo/federation-v1",
    reason="Migrate to Federation V2",
    created_by=USER,
)


@strawberry.federation.type(
    keys=["id", "sku package", "sku variation { id }"], directives=[Custom()]
)
class Product:
    id: strawberry.ID
    sku: str | None
    package: str | None
    variation: ProductVariation | None
    dimensions: ProductDimension | None
    created_by: User | None = strawberry.federation.field(provides=["totalProductsCreated"])
    notes: str | None = strawberry.federation.field(tags=["internal"], default=None)
    research: list[ProductResearch] = strawberry.field(default_factory=list)

    @classmethod
    def resolve_reference(cls, **representation: Any) -> Product | None:
        for product in PRODUCTS:
            if "id" in representation and product.id == representation["id"]:
                return product
            if representation.get("sku") == product.sku and (
                representation.get("package") == product.package
                or (representation.get("variation") or {}).get("id") == product.variation.id  # type: ignore[union-attr]
            ):
                return product
        return None


RESEARCH = [
    ProductResearch(
        study=CaseStudy(case_number=strawberry.ID("1234"), description="Federation Study")
    ),
    ProductResearch(study=CaseStudy(case_number=strawberry.ID("1235"), description="Studio Study")),
]
DIMENSIONS = ProductDimension(size="small", weight=1.0, unit="kg")
PRODUCTS = [
    Product(
        id=strawberry.ID("apollo-federation"),
        sku="federation",
        package="@apollo/federation",
        variation=ProductVariation(id=strawberry.ID("OSS")),
        dimensions=DIMENSIONS,
        created_by=USER,
        research=[RESEARCH[0]],
    ),
    Product(
        id=strawberry.ID("apollo-studio"),
        sku="studio",
        package="",
        variation=ProductVariation(id=strawberry.ID("platform")),
        dimensions=DIMENSIONS,
        created_by=USER,
        research=[RESEARCH[1]],
    ),
]


@strawberry.federation.interface_object(keys=["id"])
class Inventory:
    id: strawberry.ID
    deprecated_products: list[DeprecatedProduct]

    @classmethod
    def resolve_reference(cls, **representation: Any) -> Inventory | None:
        if representation["id"] != "apollo-oss":
            return None
        return Inventory(id=strawberry.ID("apollo-oss"), deprecated_products=[DEPRECATED])


@strawberry.type
class Query:
    @strawberry.field
    def product(self, id: strawberry.ID) -> Product | None:
        return next((p for p in PRODUCTS if p.id == id), None)

    @strawberry.field(deprecation_reason="Use product query instead")
    def deprecated_product(self, sku: str, package: str) -> DeprecatedProduct | None:
        return DEPRECATED if (sku, package) == (DEPRECATED.sku, DEPRECATED.package) else None


class Schema(TracedSchema, strawberry.federation.Schema):
    """Federation's schema with the API's federated tracing (schema/ftv1)."""


schema = Schema(
    query=Query,
    types=[Product, DeprecatedProduct, ProductResearch, User, Inventory],
    federation_version="2.3",
)


class TracedGraphQL(GraphQL[Any, Any]):
    """Strawberry's view, tracing a request that asks as the API's view does (web/view.py);
    this subgraph has no credentials, so the asking is enough."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asks = scope["type"] == "http" and asks_for_trace(Headers(scope=scope))
        with recording(Recorder() if asks else None):
            await super().__call__(scope, receive, send)


def main() -> None:
    port = int(sys.argv[1])
    app = Starlette(routes=[Route("/", TracedGraphQL(schema, graphql_ide=None))])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
