"""Persisted documents: one store for the documents an app was built with (a trusted documents
manifest, loaded at start) and those clients register by Apollo's automatic persisted queries
(APQ, kept in a bounded LRU per process), and the policy that says, per kind of principal,
which documents a request may run.

A request names a stored document by `extensions.persistedQuery.sha256Hash` (Apollo's link,
and GraphQL Code Generator's persisted documents) or by `documentId` (the GraphQL over HTTP
persisted documents draft), on POST or GET; the view (web/view.py) puts the document's text in
the request and the request runs as if the client had sent it whole, on either executor.

Every stored document is parsed, validated, analysed (schema/analysis.py) and, where the
compiled path covers it, compiled when it is registered: its analysis is pinned in the
analyser, so no request ever waits for it.

The policies (docs/clients.md says what each one lets a client do):

- `any`: any document, whole or persisted;
- `apq`: stored documents only, by hash, and documents registered by APQ (sent with their
  hash); a document sent whole without its hash is refused (PERSISTED_QUERY_REQUIRED);
- `known`: the manifest's documents only; any other is refused (UNKNOWN_DOCUMENT), whether
  sent by hash or whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from graphql import OperationDefinitionNode, OperationType, get_operation_ast
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from db.keys import Principal
from schema.analysis import Analyser, Analysis
from web.body import BadJSON, Body
from web.refusals import (
    BAD_REQUEST,
    PERSISTED_QUERY_NOT_SUPPORTED,
    PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE,
    refusal,
)

# Apollo's link sends the document on this code (or this message), and registers it so.
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
PERSISTED_QUERY_HASH_MISMATCH = "PERSISTED_QUERY_HASH_MISMATCH"
# The policy refuses the document: the credential may run only stored documents (`apq`), or
# only the manifest's (`known`).
PERSISTED_QUERY_REQUIRED = "PERSISTED_QUERY_REQUIRED"
UNKNOWN_DOCUMENT = "UNKNOWN_DOCUMENT"

APOLLO_MANIFEST = "apollo-persisted-query-manifest"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# A response that asks for the document must never be kept by a cache (a CDN before a GET):
# the next request, the document registered, has the answer.
_NOT_CACHED = {"cache-control": "private, no-cache, must-revalidate"}


class Policy(StrEnum):
    """Which documents a principal may run."""

    ANY = "any"
    APQ = "apq"
    KNOWN = "known"


@dataclass(frozen=True)
class Policies:
    """The policy of API keys, and that of identity-provider tokens."""

    api_keys: Policy = Policy.ANY
    tokens: Policy = Policy.ANY

    def of(self, principal: Principal | None) -> Policy:
        if principal is None:
            return Policy.ANY  # none authenticated: the request is refused before it runs
        return self.api_keys if principal.issuer is None else self.tokens


class ManifestProblem(Exception):
    """Why the trusted documents manifest cannot be used: two lines, the setting and what to do."""


class Refused(Exception):
    """A request whose persisted document cannot run: answered before anything runs."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers

    def response(self, graphql_response: bool) -> Response:
        return refusal(
            self.status,
            str(self),
            self.code,
            graphql_response=graphql_response,
            headers=self.headers,
        )


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """The documents of a manifest by their ids: GraphQL Code Generator's persisted documents
    (`{hash: document}`) or Apollo's operation manifest; ManifestProblem for anything else."""
    setting = f"TRUSTED_DOCUMENTS_FILE: {str(path)!r}"
    formats = (
        "Use GraphQL Code Generator's persisted-documents.json ({hash: document}) or Apollo's "
        f'operation manifest ({{"format": "{APOLLO_MANIFEST}", "version": 1, '
        '"operations": [...]}).'
    )
    try:
        value = json.loads(path.read_bytes())
    except OSError as error:
        raise ManifestProblem(
            f"{setting} cannot be read ({error.strerror or type(error).__name__}).\n"
            "Point it at the manifest your client build writes, or unset it."
        ) from None
    except ValueError as error:
        raise ManifestProblem(f"{setting} is not JSON ({error}).\n{formats}") from None
    if isinstance(value, dict) and "format" in value:
        if value["format"] != APOLLO_MANIFEST or value.get("version") != 1:
            raise ManifestProblem(f"{setting} is of a format this server does not read.\n{formats}")
        operations = value.get("operations")
        if not isinstance(operations, list):
            raise ManifestProblem(f"{setting} has no list of operations.\n{formats}")
        documents = {}
        for place, operation in enumerate(operations):
            if not (
                isinstance(operation, dict)
                and isinstance(operation.get("id"), str)
                and isinstance(operation.get("body"), str)
            ):
                raise ManifestProblem(
                    f"{setting}: operations[{place}] has no string id and body.\n{formats}"
                )
            documents[operation["id"]] = operation["body"]
        return documents
    if isinstance(value, dict) and all(isinstance(text, str) for text in value.values()):
        return value
    raise ManifestProblem(f"{setting} is neither manifest format.\n{formats}")


@dataclass(frozen=True)
class Stored:
    """A registered document, and the operation names its analyses are pinned under."""

    text: str
    names: tuple[str | None, ...]


class Documents:
    """The store of persisted documents, and the policy over them."""

    def __init__(
        self,
        analyser: Analyser,
        *,
        manifest: Mapping[str, str] | None = None,
        policies: Policies | None = None,
        apq_entries: int = 500,
        apq_characters: int = 200_000,
        compile_plan: Callable[[Analysis, str | None], object] | None = None,
    ) -> None:
        self.analyser = analyser
        self.policies = policies or Policies()
        self.apq_entries = apq_entries
        self.apq_characters = apq_characters
        self.compile_plan = compile_plan  # the compiled path's, when it is on
        self.known: dict[str, Stored] = {}  # the manifest's, by id and by SHA-256 of the text
        self.apq: OrderedDict[str, Stored] = OrderedDict()  # by SHA-256, oldest use first
        self._apq_characters = 0
        for key, text in (manifest or {}).items():
            stored = self._register(text)
            if isinstance(stored, str):
                raise ManifestProblem(
                    f"TRUSTED_DOCUMENTS_FILE: the document {key[:20]!r} cannot run here: "
                    f"{stored}\nBuild the manifest against this server's schema "
                    "(graphql/schema.graphql), or leave the document out."
                )
            self.known[key] = self.known[sha256(text)] = stored

    def _register(self, text: str) -> Stored | str:
        """The document analysed (and compiled) under each of its operations' names, and
        pinned; the first error's message when it cannot run (then nothing is kept)."""
        analysis = self.analyser.analyse(text, None)
        if analysis.errors or analysis.document is None:
            return analysis.errors[0].message if analysis.errors else "it does not parse"
        names = tuple(
            definition.name.value if definition.name else None
            for definition in analysis.document.definitions
            if isinstance(definition, OperationDefinitionNode)
        )
        for name in names:
            pinned = self.analyser.pin(text, name)
            if self.compile_plan is not None and not pinned.errors:
                self.compile_plan(pinned, name)
        return Stored(text, names)

    def _apq(self, key: str) -> Stored | None:
        stored = self.apq.get(key)
        if stored is not None:
            self.apq.move_to_end(key)
        return stored

    def _apq_register(self, key: str, text: str) -> Stored | None:
        """The document registered by APQ; None when it is not kept (it cannot run, or APQ
        is off, or it is larger than the whole store)."""
        if self.apq_entries == 0 or len(text) > self.apq_characters:
            return None
        stored = self._register(text)
        if isinstance(stored, str):
            return None  # run as sent, it gets its errors
        self.apq[key] = stored
        self._apq_characters += len(text)
        while len(self.apq) > self.apq_entries or self._apq_characters > self.apq_characters:
            _, old = self.apq.popitem(last=False)
            self._apq_characters -= len(old.text)
            self.analyser.unpin(old.text, old.names)
        return stored

    def resolve(
        self, data: Mapping[str, Any], principal: Principal | None
    ) -> dict[str, Any] | None:
        """The request `data` with its persisted document's text in `query` (and the marker
        gone), None when it names none and may run as sent; Refused when it may not run."""
        policy = self.policies.of(principal)
        extensions = data.get("extensions")
        marker = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        document_id = data.get("documentId")
        query = data.get("query")
        if marker is None and document_id is None:
            if not isinstance(query, str) or policy is Policy.ANY or sha256(query) in self.known:
                return None  # Strawberry's to run, or to refuse
            if policy is Policy.APQ:
                raise Refused(
                    400,
                    PERSISTED_QUERY_REQUIRED,
                    "This credential sends documents by their hash (Apollo's automatic "
                    "persisted queries): add extensions.persistedQuery.",
                )
            raise _unknown()
        if document_id is not None:
            if marker is not None or query is not None:
                raise _bad("Send a documentId alone: not with a query or a persistedQuery.")
            if not isinstance(document_id, str):
                raise _bad("documentId must be a string.")
            key = document_id.removeprefix("sha256:")
            found = self.known.get(document_id) or self.known.get(key)
            if found is None and policy is not Policy.KNOWN:
                found = self._apq(key.lower())
            if found is None:
                raise _unknown() if policy is Policy.KNOWN else _not_found()
            return _resolved(data, found)
        if not isinstance(marker, dict) or type(marker.get("version")) is not int:
            raise _bad("extensions.persistedQuery.version must be 1.")  # not 1.0, nor true
        if marker["version"] != 1:
            raise _bad("extensions.persistedQuery.version must be 1.")
        given = marker.get("sha256Hash")
        if not isinstance(given, str) or not _SHA256.fullmatch(given):
            raise _bad("extensions.persistedQuery.sha256Hash must be a SHA-256 hash in hex.")
        key = given.lower()
        if query is None:
            found = self.known.get(key)
            if found is None and policy is not Policy.KNOWN:
                found = self._apq(key)
            if found is None:
                if policy is Policy.KNOWN:
                    raise _unknown()
                if self.apq_entries == 0:
                    raise Refused(
                        400, PERSISTED_QUERY_NOT_SUPPORTED, PERSISTED_QUERY_NOT_SUPPORTED_MESSAGE
                    )
                raise _not_found()
            return _resolved(data, found)
        if not isinstance(query, str):
            return None  # Strawberry refuses it
        if sha256(query) != key:
            raise Refused(
                400,
                PERSISTED_QUERY_HASH_MISMATCH,
                "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query's text "
                "(UTF-8, in hex): send the hash of exactly the text sent.",
            )
        found = self.known.get(key)
        if found is None:
            if policy is Policy.KNOWN:
                raise _unknown()
            found = self._apq(key) or self._apq_register(key, query)
        return _resolved(data, found)

    def read_by_get(self, request: Request) -> Body | None:
        """A GET's persisted query as the body of the same request by POST, for the compiled
        path; None for anything else (a mutation by GET stays graphql-core's to refuse)."""
        resolved = resolved_of(request)
        if request.method != "GET" or resolved is None:
            return None
        name = resolved.get("operationName")
        analysis = self.analyser.analyse(resolved["query"], name)
        if analysis.document is None or analysis.errors:
            return None
        operation = get_operation_ast(analysis.document, name)
        if operation is None or operation.operation is not OperationType.QUERY:
            return None
        return Body(orjson.dumps(resolved)).with_json(resolved)

    def refusal(self, text: str, principal: Principal | None) -> Refused | None:
        """Why a document sent whole (a WebSocket's subscribe) may not run, or None."""
        try:
            self.resolve({"query": text}, principal)
        except Refused as refused:
            return refused
        return None

    def answer(
        self,
        request: Request,
        principal: Principal | None,
        parse_query_params: Callable[[QueryParams], dict[str, Any]],
        graphql_response: bool,
    ) -> Response | None:
        """The view's hook, after the body is read: a refusal to send, or None with the
        request's persisted document put in its place (see `resolved_of`)."""
        data: Any
        if request.method == "GET":
            data = parse_query_params(request.query_params)  # a 400 for a bad parameter
        elif "application/json" in request.headers.get("content-type", ""):
            body: Body = request.state.body
            try:
                data = body.json()
            except BadJSON:
                return None  # Strawberry refuses it, saying why
        else:
            return None
        if not isinstance(data, dict):
            return None  # a batch (refused), or another refusal of Strawberry's
        try:
            resolved = self.resolve(data, principal)
        except Refused as refused:
            return refused.response(graphql_response)
        if resolved is not None:
            request.state.persisted = resolved
            if request.method != "GET":
                # The compiled path's gate, then Strawberry, read the body's JSON: this.
                request.state.body = body.with_json(resolved)
        return None


def resolved_of(request: Request) -> dict[str, Any] | None:
    """The request as its persisted document made it (the view's `Documents.answer`)."""
    resolved: dict[str, Any] | None = getattr(request.state, "persisted", None)
    return resolved


def _resolved(data: Mapping[str, Any], found: Stored | None) -> dict[str, Any]:
    """`data` with the stored document (if any: else as sent) and no persisted marker. With no
    operation name, a document of one operation runs it under its name: the analysis pinned."""
    resolved = {key: value for key, value in data.items() if key != "documentId"}
    given = data.get("extensions") or {}
    extensions = {key: value for key, value in given.items() if key != "persistedQuery"}
    resolved["extensions"] = extensions or None
    if found is not None:
        resolved["query"] = found.text
        if resolved.get("operationName") is None and len(found.names) == 1:
            resolved["operationName"] = found.names[0]
    return resolved


def _bad(message: str) -> Refused:
    return Refused(400, BAD_REQUEST, message)


def _not_found() -> Refused:
    # 200, as Apollo Server answers it: the link reads the code from a successful response.
    return Refused(200, PERSISTED_QUERY_NOT_FOUND, PERSISTED_QUERY_NOT_FOUND_MESSAGE, _NOT_CACHED)


def _unknown() -> Refused:
    return Refused(
        400,
        UNKNOWN_DOCUMENT,
        "This credential may run only the documents its app was built with (the trusted "
        "documents manifest), and this is not one of them.",
    )
