"""Requests /graphql refuses before they run (web/refusals.py), as the tests read them."""

from __future__ import annotations

import httpx


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The message of a request /graphql refused before it ran: the status, a GraphQL-shaped
    JSON body with the code and no `data`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(
        ("application/json", "application/graphql-response+json")
    )
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"] == {"code": code}
    message: str = error["message"]
    return message
