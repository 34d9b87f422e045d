// Runs the test suite of @apollo/federation-subgraph-compatibility with @apollo/gateway standing
// in for the router (the package's own runner needs Docker or a downloaded router and rover).
// Starts the suite's users and inventory subgraphs, composes them with the products subgraph at
// PRODUCTS_URL (ours, tests/support/compat_products.py), serves the gateway where the suite expects the
// router (localhost:4000), runs the suite's jest tests and prints one line per feature, then a
// JSON summary. Exit status 0 when every feature the suite marks required passes.
//
// Usage: node tests/node/federation_compat.mjs PRODUCTS_URL
import { fork, spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const suite = path.dirname(require.resolve("@apollo/federation-subgraph-compatibility-tests/package.json"));
const { TESTS } = require(path.join(suite, "dist/testRunner.js"));
const { ApolloServer } = await import("@apollo/server");
const { startStandaloneServer } = await import("@apollo/server/standalone");
const { ApolloServerPluginLandingPageDisabled, ApolloServerPluginUsageReportingDisabled } =
  await import("@apollo/server/plugin/disabled");
const { ApolloGateway } = await import("@apollo/gateway");
const { composeServices } = await import("@apollo/composition");
const { parse } = await import("graphql");

const productsUrl = process.argv[2];
const quiet = { debug() {}, info() {}, warn: console.error, error: console.error };
const children = [];

// The suite's own subgraphs say "ready" over IPC once they listen (as pm2 expects).
function startSubgraph(name, port) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(suite, "dist/subgraphs", name, "index.js"), [], {
      cwd: path.join(suite, "dist/subgraphs", name),
      env: { ...process.env, PORT: String(port) },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    children.push(child);
    child.on("message", (message) => message === "ready" && resolve(`http://127.0.0.1:${port}/`));
    child.on("exit", (code) => reject(new Error(`${name} subgraph exited with ${code}`)));
  });
}

async function sdlOf(url) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: "{ _service { sdl } }" }),
  });
  return (await response.json()).data._service.sdl;
}

let gatewayServer;
let exitCode = 1;
try {
  const [usersUrl, inventoryUrl] = await Promise.all([
    startSubgraph("users", 4002),
    startSubgraph("inventory", 4003),
  ]);
  const services = [
    { name: "products", url: productsUrl },
    { name: "users", url: usersUrl },
    { name: "inventory", url: inventoryUrl },
  ];
  for (const service of services) service.typeDefs = parse(await sdlOf(service.url));
  const composed = composeServices(services);
  if (composed.errors) throw new Error(`composition failed: ${composed.errors.join("; ")}`);

  gatewayServer = new ApolloServer({
    gateway: new ApolloGateway({ supergraphSdl: composed.supergraphSdl, logger: quiet }),
    logger: quiet,
    plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginUsageReportingDisabled()],
  });
  await startStandaloneServer(gatewayServer, { listen: { host: "127.0.0.1", port: 4000 } });

  const jest = spawn(
    path.join(path.dirname(require.resolve("jest/package.json")), "bin/jest.js"),
    [
      "--ci",
      "--json",
      "--rootDir",
      path.join(suite, "dist/tests"),
      "--testMatch",
      "**/*.test.js",
      "--config",
      // The suite lives in node_modules, which jest skips unless told otherwise.
      JSON.stringify({
        testEnvironment: "node",
        testPathIgnorePatterns: [],
        haste: { retainAllFiles: true },
      }),
    ],
    {
      cwd: suite,
      env: {
        ...process.env,
        PRODUCTS_URL: productsUrl,
        // The suite asks for "localhost"; make that 127.0.0.1, where everything listens.
        NODE_OPTIONS: "--dns-result-order=ipv4first",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  jest.stdout.on("data", (chunk) => (output += chunk));
  let errors = "";
  jest.stderr.on("data", (chunk) => (errors += chunk));
  await new Promise((resolve) => jest.on("close", resolve));
  if (!output.trim()) throw new Error(`jest printed no results: ${errors.slice(-2000)}`);
  const assertions = JSON.parse(output).testResults.flatMap((file) => file.assertionResults);

  const results = TESTS.map((test) => {
    const mine = assertions.filter(
      (a) => (a.ancestorTitles.length === 0 ? a.fullName : a.ancestorTitles[0]) === test.assertion,
    );
    const passed = mine.length > 0 && mine.every((a) => a.status === "passed");
    const failures = mine.filter((a) => a.status !== "passed").map((a) => a.fullName);
    return { feature: test.column, required: test.required, passed, failures };
  });
  for (const r of results) {
    const mark = r.passed ? "pass" : "FAIL";
    console.log(`${mark}  ${r.feature}${r.required ? " (required)" : ""}`);
  }
  const passed = results.filter((r) => r.passed).length;
  console.log(`federation compatibility: ${passed} of ${results.length} features pass`);
  console.log(JSON.stringify({ results }));
  exitCode = results.every((r) => r.passed || !r.required) ? 0 : 1;
} finally {
  if (gatewayServer) await gatewayServer.stop();
  for (const child of children) child.kill();
}
process.exit(exitCode);
