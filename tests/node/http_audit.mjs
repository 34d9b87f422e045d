// Runs every audit of graphql-http's server audit suite against a running server and prints
// one line per audit: "ok", "warn" or "error", its id, its name and, when not ok, why.
// Usage: node tests/node/http_audit.mjs http://127.0.0.1:PORT/graphql
// Exit status 0 only when every audit, MUST and SHOULD alike, passes.
import { serverAudits } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node http_audit.mjs URL");
  process.exit(2);
}
const headers = process.env.AUDIT_AUTHORIZATION
  ? { authorization: process.env.AUDIT_AUTHORIZATION }
  : {};
const fetchWithHeaders = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...headers, ...(init.headers || {}) } });

let failures = 0;
let warnings = 0;
for (const audit of serverAudits({ url, fetchFn: fetchWithHeaders })) {
  const result = await audit.fn();
  if (result.status === "error") failures += 1;
  if (result.status === "warn") warnings += 1;
  const why = result.status === "ok" ? "" : ` -- ${result.reason}`;
  console.log(`${result.status.padEnd(5)} ${audit.id} ${audit.name}${why}`);
}
console.log(`audits: ${failures} failed, ${warnings} warned`);
process.exit(failures || warnings ? 1 : 0);
