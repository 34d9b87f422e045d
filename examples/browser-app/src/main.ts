// A browser app on its own origin using the customer API as a frontend would: it signs in with
// the identity provider, sends the access token as `Authorization: Bearer …` (the API allows
// this origin by CORS_ALLOW_ORIGINS), and keeps what it reads in Apollo Client's normalised
// cache. The customer shown is a watched query: when startKycVerification answers with the
// customer's id and kycStatus, the cache merges it into that record and the page updates
// without another request. The operations are graphql/operations/, typed by codegen.ts.
//
// Documents travel as persisted documents: Apollo Client's persisted-queries link sends each
// one's SHA-256 alone (reads by GET, which a CDN may cache) and, only when the API answers
// PERSISTED_QUERY_NOT_FOUND, the document with its hash, which registers it (Apollo's
// automatic persisted queries). The hashes are GraphQL Code Generator's, of the documents in
// its manifest (src/gql/persisted-documents.json), and the document sent is the manifest's
// text: so an API that loaded the manifest (TRUSTED_DOCUMENTS_FILE) knows every one of them
// from the start, and one held to it (TOKEN_DOCUMENTS=known) runs these documents only.
import {
  ApolloClient,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  ServerError,
} from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { parse, print, type DocumentNode } from "graphql";

import manifest from "./gql/persisted-documents.json";

import {
  CreateCustomerDocument,
  CustomerDocument,
  StartKycVerificationDocument,
  UpdateCustomerDocument,
} from "./gql/graphql";
import type { CustomerQuery, UserErrorCode } from "./gql/graphql";

type Config = { apiUrl: string; signInUrl: string };
type Shown = CustomerQuery["customer"];

const element = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no #${id} on the page`);
  return found as T;
};
const input = (id: string): string => element<HTMLInputElement>(id).value.trim();
const show = (id: string, text: string): void => {
  element(id).textContent = text;
};

// -- sign-in: the provider redirects back with #access_token=…&state=… ----------------------

function tokenFromRedirect(): string | null {
  const answer = new URLSearchParams(window.location.hash.slice(1));
  const token = answer.get("access_token");
  if (token && answer.get("state") === sessionStorage.getItem("sign-in-state")) {
    sessionStorage.setItem("access-token", token);
    history.replaceState(null, "", window.location.pathname); // the token leaves the address bar
  }
  return sessionStorage.getItem("access-token");
}

function signIn(config: Config): void {
  const state = crypto.randomUUID();
  sessionStorage.setItem("sign-in-state", state);
  const back = window.location.origin + window.location.pathname;
  const query = new URLSearchParams({ redirect_uri: back, state, response_type: "token" });
  window.location.assign(`${config.signInUrl}?${query}`);
}

function claimsOf(token: string): Record<string, unknown> {
  // Shown to the person only; the API checks the signature.
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload)) as Record<string, unknown>;
}

// -- the API ------------------------------------------------------------------------------------

const documents: Record<string, string> = manifest;

// Codegen's hash of an operation ("sha256:<hex>"), carried by the document it generated.
function codegenHash(node: unknown): string | undefined {
  return (node as { __meta__?: { hash?: string } }).__meta__?.hash;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function apiClient(config: Config, token: string): ApolloClient {
  const http = new HttpLink({
    uri: config.apiUrl,
    headers: { authorization: `Bearer ${token}` },
    // The manifest's text of a generated document: the text its hash is of.
    print: (node, originalPrint) => documents[codegenHash(node) ?? ""] ?? originalPrint(node),
  });
  const persisted = new PersistedQueryLink({
    generateHash: (document: DocumentNode) =>
      codegenHash(document)?.replace(/^sha256:/, "") ?? sha256(print(document)),
    useGETForHashedQueries: true,
  });
  return new ApolloClient({
    link: persisted.concat(http),
    // Customer and KycVerification are identified by `id` (Apollo's default key field).
    cache: new InMemoryCache(),
  });
}

// The stable code of an error the API answered with (UNKNOWN_DOCUMENT, say), else its text.
function codeOf(error: unknown): string {
  const errors = CombinedGraphQLErrors.is(error)
    ? error.errors
    : ServerError.is(error)
      ? (JSON.parse(error.bodyText) as { errors?: CombinedGraphQLErrors["errors"] }).errors
      : undefined;
  return String(errors?.[0]?.extensions?.code ?? error);
}

function report(error: unknown): void {
  show("error", error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}

function showErrors(errors: ReadonlyArray<{ code: UserErrorCode; message: string }>): void {
  show("user-errors", errors.length ? errors.map((e) => e.code).join(", ") : "none");
}

function render(customer: Shown): void {
  show("id", customer?.id ?? "-");
  show("shownExternalId", customer?.externalCustomerId ?? "-");
  show("shownEmail", customer?.data.email ?? "-");
  show("shownCity", customer?.data.city ?? "-");
  show("kycStatus", customer?.kycStatus ?? "none");
}

function start(config: Config, token: string): void {
  const client = apiClient(config, token);
  const act = (id: string, action: () => Promise<string>): void => {
    element(id).addEventListener("click", () => {
      show("error", "");
      action()
        .then((done) => show("done", done))
        .catch(report);
    });
  };

  // Read: a watched query, so whatever later answers carry this customer updates the page.
  let watching: { unsubscribe(): void } | null = null;
  const watch = (externalCustomerId: string): void => {
    watching?.unsubscribe(); // one customer on the page at a time
    const watched = client.watchQuery({ query: CustomerDocument, variables: { externalCustomerId } });
    watching = watched.subscribe({
      next: (result) => {
        if (result.error) report(result.error);
        if (result.dataState === "complete") render(result.data.customer);
      },
      error: report,
    });
  };

  act("create", async () => {
    const { data } = await client.mutate({
      mutation: CreateCustomerDocument,
      variables: {
        input: { externalCustomerId: input("externalCustomerId"), data: { email: input("email") } },
      },
    });
    showErrors(data?.createCustomer.userErrors ?? []);
    return `created ${data?.createCustomer.customer?.id ?? "nothing"}`;
  });

  act("read", async () => {
    const externalCustomerId = input("externalCustomerId");
    watch(externalCustomerId);
    const { data } = await client.query({
      query: CustomerDocument,
      variables: { externalCustomerId },
    });
    return data?.customer ? `read ${data.customer.id}` : "read: NOT_FOUND";
  });

  act("update", async () => {
    const { data } = await client.mutate({
      mutation: UpdateCustomerDocument,
      variables: {
        input: { externalCustomerId: input("externalCustomerId"), data: { city: input("city") } },
      },
    });
    showErrors(data?.updateCustomer.userErrors ?? []);
    return `updated ${data?.updateCustomer.customer?.id ?? "nothing"}`;
  });

  act("start-kyc", async () => {
    // Only the mutation's own answer reaches the cache: no refetch of the customer.
    const { data } = await client.mutate({
      mutation: StartKycVerificationDocument,
      variables: { input: { externalCustomerId: input("externalCustomerId") } },
    });
    showErrors(data?.startKycVerification.userErrors ?? []);
    return `verification ${data?.startKycVerification.verification?.status ?? "not started"}`;
  });

  // A document this app was not built with (in no manifest): an API that holds the app's
  // tokens to its own documents (TOKEN_DOCUMENTS=known) refuses it with UNKNOWN_DOCUMENT.
  act("ad-hoc", async () => {
    const query = parse("query AdHoc($id: String!) { customer(externalCustomerId: $id) { id } }");
    try {
      const { data } = await client.query({
        query,
        variables: { id: input("externalCustomerId") },
        fetchPolicy: "network-only",
      });
      show("ad-hoc-answer", `ran: ${JSON.stringify(data)}`);
    } catch (error) {
      show("ad-hoc-answer", `refused: ${codeOf(error)}`);
    }
    return "sent the ad-hoc document";
  });

  act("read-other", async () => {
    const { data } = await client.query({
      query: CustomerDocument,
      variables: { externalCustomerId: input("otherId") },
      fetchPolicy: "network-only",
    });
    show("other", data?.customer ? `found ${data.customer.externalCustomerId}` : "NOT_FOUND");
    return "read the other";
  });

  act("update-other", async () => {
    const { data } = await client.mutate({
      mutation: UpdateCustomerDocument,
      variables: { input: { externalCustomerId: input("otherId"), data: { city: "Elsewhere" } } },
    });
    const errors = data?.updateCustomer.userErrors ?? [];
    showErrors(errors);
    show("other", errors.length ? errors.map((e) => e.code).join(", ") : "updated");
    return "updated the other";
  });
}

async function main(): Promise<void> {
  const config = (await (await fetch("./config.json")).json()) as Config;
  const token = tokenFromRedirect();
  if (!token) {
    const button = element<HTMLButtonElement>("sign-in");
    button.hidden = false;
    button.addEventListener("click", () => signIn(config));
    return;
  }
  const claims = claimsOf(token);
  show("who", `Signed in as ${String(claims.sub)} (${String(claims.scope ?? "")}).`);
  element("app").hidden = false;
  start(config, token);
  document.body.dataset.ready = "true";
}

main().catch(report);
