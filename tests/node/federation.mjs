// Composes a supergraph from the customers subgraph (our server) and a small orders subgraph
// written here, serves it with @apollo/gateway, and runs queries through the gateway that
// join the two. Prints one JSON line: the query results and every outbound connection.
//
// Usage: node tests/node/federation.mjs CUSTOMERS_URL ORDERS_JSON
//   ORDERS_JSON: [{"id": "o-1", "total": 12.5, "customer": "c-1"}, ...]
//   CUSTOMERS_AUTHORIZATION: sent to the customers subgraph as the Authorization header.
// Exit status 1 when composition fails, a query fails, or anything tries to reach a host
// other than this machine.
import dns from "node:dns";
import net from "node:net";

const LOCAL = new Set(["127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"]);
const outbound = [];
const strangers = [];

// Every TCP connection and every name look-up of this process is recorded, and refused when
// it is not for this machine: the test fails if the gateway tries to report anywhere.
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0]; // Node passes normalized args
  const options = typeof first === "object" ? first : { port: first, host: args[1] };
  const host = options.host ?? "localhost";
  if (options.path === undefined) {
    outbound.push(`${host}:${options.port}`);
    if (!LOCAL.has(host)) {
      strangers.push(`${host}:${options.port}`);
      throw new Error(`refused: connection to ${host}`);
    }
  }
  return connect.apply(this, args);
};
const lookup = dns.lookup;
dns.lookup = function (hostname, ...rest) {
  if (LOCAL.has(hostname)) return lookup.call(this, hostname, ...rest);
  strangers.push(`dns:${hostname}`); // refused here: not even the look-up leaves the machine
  const callback = rest.at(-1);
  const error = Object.assign(new Error(`refused: look-up of ${hostname}`), { code: "ENOTFOUND" });
  process.nextTick(() => callback(error));
  return undefined;
};
const promisesLookup = dns.promises.lookup;
dns.promises.lookup = async (hostname, ...rest) => {
  if (LOCAL.has(hostname)) return promisesLookup.call(dns.promises, hostname, ...rest);
  strangers.push(`dns:${hostname}`);
  throw Object.assign(new Error(`refused: look-up of ${hostname}`), { code: "ENOTFOUND" });
};

const { ApolloServer } = await import("@apollo/server");
const { startStandaloneServer } = await import("@apollo/server/standalone");
const { ApolloServerPluginLandingPageDisabled, ApolloServerPluginUsageReportingDisabled } =
  await import("@apollo/server/plugin/disabled");
const { buildSubgraphSchema } = await import("@apollo/subgraph");
const { ApolloGateway, RemoteGraphQLDataSource } = await import("@apollo/gateway");
const { composeServices } = await import("@apollo/composition");
const { parse } = await import("graphql");

const [customersUrl, ordersJson] = process.argv.slice(2);
const orders = JSON.parse(ordersJson);
const authorization = process.env.CUSTOMERS_AUTHORIZATION;
const customerHeaders = {
  "content-type": "application/json",
  ...(authorization ? { authorization } : {}),
};
const quiet = { debug() {}, info() {}, warn: console.error, error: console.error };

const sdlResponse = await fetch(customersUrl, {
  method: "POST",
  headers: customerHeaders,
  body: JSON.stringify({ query: "{ _service { sdl } }" }),
});
const customersSdl = (await sdlResponse.json()).data._service.sdl;

const ordersSdl = `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.11", import: ["@key"])
  type Query { orders: [Order!]! }
  type Order @key(fields: "id") { id: ID!  total: Float!  customer: Customer! }
  type Customer @key(fields: "externalCustomerId") {
    externalCustomerId: String!
    orders: [Order!]!
  }
`;
const ordersSchema = buildSubgraphSchema([{
  typeDefs: parse(ordersSdl),
  resolvers: {
    Query: { orders: () => orders },
    Order: {
      __resolveReference: ({ id }) => orders.find((order) => order.id === id),
      customer: (order) => ({ externalCustomerId: order.customer }),
    },
    Customer: {
      orders: ({ externalCustomerId }) =>
        orders.filter((order) => order.customer === externalCustomerId),
    },
  },
}]);
const ordersServer = new ApolloServer({
  schema: ordersSchema,
  logger: quiet,
  plugins: [ApolloServerPluginLandingPageDisabled()],
});
const { url: ordersUrl } = await startStandaloneServer(ordersServer, {
  listen: { host: "127.0.0.1", port: 0 },
});

const composed = composeServices([
  { name: "customers", url: customersUrl, typeDefs: parse(customersSdl) },
  { name: "orders", url: ordersUrl, typeDefs: parse(ordersSdl) },
]);
if (composed.errors) {
  console.log(JSON.stringify({ compositionErrors: composed.errors.map(String), outbound, strangers }));
  process.exit(1);
}

const gateway = new ApolloGateway({
  supergraphSdl: composed.supergraphSdl,
  logger: quiet,
  buildService: ({ url }) =>
    new RemoteGraphQLDataSource({
      url,
      willSendRequest({ request }) {
        if (authorization && url === customersUrl) {
          request.http.headers.set("authorization", authorization);
        }
      },
    }),
});
const gatewayServer = new ApolloServer({
  gateway,
  logger: quiet,
  plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginUsageReportingDisabled()],
});
const { url: gatewayUrl } = await startStandaloneServer(gatewayServer, {
  listen: { host: "127.0.0.1", port: 0 },
});

async function query(text) {
  const response = await fetch(gatewayUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: text }),
  });
  return response.json();
}

const results = {
  ordersWithCustomers: await query(
    "{ orders { id total customer { externalCustomerId kycStatus data { email } } } }",
  ),
  customerWithOrders: await query(
    '{ customer(externalCustomerId: "c-1") { externalCustomerId data { email } orders { id total } } }',
  ),
};

await gatewayServer.stop();
await ordersServer.stop();
console.log(JSON.stringify({ results, outbound, strangers }));
const failed = Object.values(results).some((result) => result.errors);
process.exit(failed || strangers.length ? 1 : 0);
