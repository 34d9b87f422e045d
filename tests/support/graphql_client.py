"""The committed operation documents, and a client that runs them over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.paths import OPERATIONS


def operation(name: str) -> str:
    """The text of graphql/operations/<name>.graphql."""
    return (OPERATIONS / f"{name}.graphql").read_text()


class GraphQLClient:
    """Runs the committed operation documents over HTTP and returns their `data`."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post("/graphql", json={"query": query, "variables": variables})

    async def run(self, name: str, **variables: Any) -> dict[str, Any]:
        """Run graphql/operations/<name>.graphql; fail on any GraphQL error."""
        response = await self.post(operation(name), variables)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def create(self, external_id: str, **data: Any) -> dict[str, Any]:
        """createCustomer's payload for this id and data (an e-mail is made up if not given)."""
        data.setdefault("email", f"{external_id}@example.com")
        result = await self.run(
            "create_customer", input={"externalCustomerId": external_id, "data": data}
        )
        payload: dict[str, Any] = result["createCustomer"]
        return payload

    async def update(self, external_id: str, **patch: Any) -> dict[str, Any]:
        result = await self.run(
            "update_customer", input={"externalCustomerId": external_id, "data": patch}
        )
        payload: dict[str, Any] = result["updateCustomer"]
        return payload

    async def start_kyc(self, external_id: str) -> dict[str, Any]:
        result = await self.run("start_kyc_verification", input={"externalCustomerId": external_id})
        payload: dict[str, Any] = result["startKycVerification"]
        return payload

    async def record_kyc(self, verification_id: str, status: str) -> dict[str, Any]:
        result = await self.run(
            "record_kyc_result", input={"verificationId": verification_id, "status": status}
        )
        payload: dict[str, Any] = result["recordKycResult"]
        return payload

    async def review_kyc(self, verification_id: str, decision: str) -> dict[str, Any]:
        result = await self.run(
            "review_kyc_verification",
            input={"verificationId": verification_id, "decision": decision},
        )
        payload: dict[str, Any] = result["reviewKycVerification"]
        return payload

    async def customer(self, external_id: str) -> dict[str, Any] | None:
        result = await self.run("customer", externalCustomerId=external_id)
        customer: dict[str, Any] | None = result["customer"]
        return customer


def without_throttle_status(response: httpx.Response) -> Any:
    """The response's JSON without `extensions.cost.throttleStatus`: for comparing answers to
    requests sent one after the other, which each drew from the principal's bucket."""
    body = response.json()
    body.get("extensions", {}).get("cost", {}).pop("throttleStatus", None)
    return body
