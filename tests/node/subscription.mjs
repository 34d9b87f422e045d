// Drives Subscription.customerEvents the way browser and Node apps do: graphql-ws's client
// (what Apollo Client's GraphQLWsLink and urql use) over the ws package.
// Usage: node tests/node/subscription.mjs http://127.0.0.1:PORT/graphql KEY
// Prints one JSON line: what each step saw. Exit status 0 when every step went as expected.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [httpUrl, key] = process.argv.slice(2);
if (!httpUrl || !key) {
  console.error("usage: node subscription.mjs URL KEY");
  process.exit(2);
}
const wsUrl = httpUrl.replace(/^http/, "ws");
const SUBSCRIPTION = `subscription($after: String) {
  customerEvents(after: $after) { cursor type externalCustomerId actor }
}`;

async function graphql(query, variables) {
  const response = await fetch(httpUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()).data;
}

const create = (id) =>
  graphql(
    `mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { userErrors { code } } }`,
    { input: { externalCustomerId: id, data: { email: `${id}@example.com` } } },
  );

function client(authorization) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: authorization },
    retryAttempts: 0,
    lazy: true,
  });
}

// Collect `count` events from a subscription after `after`, doing `meanwhile` once it is open.
function collect(ws, after, count, meanwhile) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} events came`)), 20000);
    const stop = ws.subscribe(
      { query: SUBSCRIPTION, variables: { after } },
      {
        next: ({ data, errors }) => {
          if (errors) return reject(new Error(JSON.stringify(errors)));
          got.push(data.customerEvents);
          if (got.length === count) {
            clearTimeout(timer);
            stop();
            resolve(got);
          }
        },
        error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
        complete: () => {},
      },
    );
    meanwhile().catch(reject);
  });
}

const report = {};
try {
  await create("node-0");
  const start = (await graphql(`{ customerEvents(first: 100) { pageInfo { endCursor } } }`))
    .customerEvents.pageInfo.endCursor;

  const first = client(`Bearer ${key}`);
  const live = await collect(first, start, 2, async () => {
    await create("node-1");
    await create("node-2");
  });
  await first.dispose();
  report.live = live.map((e) => `${e.type} ${e.externalCustomerId} ${e.actor}`);

  // A client that reconnects with the last cursor it saw misses nothing that came meanwhile.
  await create("node-3");
  const second = client(`Bearer ${key}`);
  const resumed = await collect(second, live.at(-1).cursor, 2, () => create("node-4"));
  await second.dispose();
  report.resumed = resumed.map((e) => e.externalCustomerId);

  // A bad key: the server closes the socket with 4401 before anything runs.
  report.badKey = await new Promise((resolve) => {
    const bad = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { Authorization: "Bearer cak_wrong" },
      retryAttempts: 0,
      on: { closed: (event) => resolve(event.code) },
    });
    bad.subscribe({ query: SUBSCRIPTION }, { next: () => {}, error: () => {}, complete: () => {} });
  });
} catch (error) {
  report.error = String(error && error.message ? error.message : error);
}
console.log(JSON.stringify(report));
const expected =
  JSON.stringify(report.live) ===
    JSON.stringify(["CUSTOMER_CREATED node-1 key:tests", "CUSTOMER_CREATED node-2 key:tests"]) &&
  JSON.stringify(report.resumed) === JSON.stringify(["node-3", "node-4"]) &&
  report.badKey === 4401;
process.exit(expected ? 0 : 1);
