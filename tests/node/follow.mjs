// The documented way to follow the event feed with graphql-ws's client: reconnect when the
// server closes with a code worth coming back on, and resume from the newest cursor, so an
// outage costs neither an event nor a repeat. `follow` is the documentation's example, with
// one line added that reports the closes; localStorage is a Map here.
// Usage: node tests/node/follow.mjs ws://127.0.0.1:PORT/graphql KEY AFTER COUNT
// Prints one line per event ("event <externalCustomerId>") and per close ("closed <code>");
// exits 0 after COUNT events.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, key, start, count] = process.argv.slice(2);
const storage = new Map(start ? [["lastCursor", start]] : []); // "": from now on
const localStorage = {
  getItem: (name) => storage.get(name) ?? null,
  setItem: (name, value) => storage.set(name, value),
};
const accessToken = async () => key;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  // Called on every (re)connect: a fresh token each time.
  connectionParams: async () => ({ Authorization: `Bearer ${await accessToken()}` }),
  retryAttempts: 0, // follow() reconnects itself, from the newest cursor
});

const EVENTS = `subscription ($after: String) {
  customerEvents(after: $after) { cursor type externalCustomerId status }
}`;
// Worth coming back on: the connection lost (1006), the server restarting (1012), its
// database or identity provider unavailable for now (1013), the token expired (4401, with a
// fresh one: connectionParams asks for it). 4403 (a revoked key, a scope missing) and 4400
// (a bug) are not.
const RECONNECT = new Set([1006, 1012, 1013, 4401]);

async function follow(onEvent) {
  for (let pause = 1000; ; pause = Math.min(pause * 2, 30_000)) {
    const after = localStorage.getItem("lastCursor"); // null: from now on
    try {
      for await (const { data } of client.iterate({ query: EVENTS, variables: { after } })) {
        onEvent(data.customerEvents);
        localStorage.setItem("lastCursor", data.customerEvents.cursor);
        pause = 1000;
      }
    } catch (closed) {
      if (!RECONNECT.has(closed?.code)) throw closed; // an `error` message: the cursor's too old...
      onClose(closed.code);
    }
    await new Promise((wake) => setTimeout(wake, pause * (0.5 + Math.random())));
  }
}

let received = 0;
function onClose(code) {
  console.log(`closed ${code}`);
}
follow((event) => {
  console.log(`event ${event.externalCustomerId}`);
  received += 1;
  if (received === Number(count)) process.exit(0);
}).catch((error) => {
  console.log(`failed ${JSON.stringify(error?.code ?? error?.message ?? error)}`);
  process.exit(1);
});
