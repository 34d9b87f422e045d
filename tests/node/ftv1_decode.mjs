// Decodes federated traces (extensions.ftv1) with Apollo's own generated protobuf code,
// @apollo/usage-reporting-protobuf: what @apollo/gateway decodes a subgraph's trace with.
// Proves the bytes are Apollo's Trace on the wire, whatever our trimmed .proto calls it.
//
// Usage: node tests/node/ftv1_decode.mjs BASE64... ; prints one JSON line per trace, its
// 64-bit integers as strings (as protobuf's JSON mapping writes them).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Trace } = require("@apollo/usage-reporting-protobuf");

for (const encoded of process.argv.slice(2)) {
  const trace = Trace.decode(Buffer.from(encoded, "base64"));
  console.log(JSON.stringify(Trace.toObject(trace, { longs: String })));
}
