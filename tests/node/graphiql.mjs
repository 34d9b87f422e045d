// Drives GraphiQL in headless Chromium (Debian's /usr/bin/chromium) as a person would: opens
// /graphql, checks the docs and the headers editor are there, types a query, runs it and reads
// the result from the page. Chromium may resolve no host but this machine, and every request
// the page makes is recorded. Prints one JSON line; saves a screenshot.
//
// Usage: node tests/node/graphiql.mjs SERVER_URL QUERY EXPECTED_TEXT SCREENSHOT_PATH
//   API_KEY: put into the headers editor as {"Authorization": "Bearer <key>"}.
//   POST_ONCE_SUBSCRIBED: a JSON body this script (not the page) POSTs to /graphql with the key
//     once the page has sent its subscription over the WebSocket: a change made elsewhere,
//     for the subscription running in GraphiQL to show.
import { launchChromium } from "./chromium.mjs";

const [serverUrl, query, expected, screenshot] = process.argv.slice(2);
const origin = new URL(serverUrl).origin;

const editorText = (page) =>
  page.evaluate(() =>
    document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue(),
  );

const browser = await launchChromium();
const outcome = { requests: [], elsewhere: [], consoleErrors: [] };
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
try {
  page.on("request", (request) => {
    const url = request.url();
    outcome.requests.push(request.method() === "POST" ? `${url} ${request.postData()?.slice(0, 160)}` : url);
    if (!url.startsWith(origin) && !url.startsWith("data:")) outcome.elsewhere.push(url);
  });
  // The page's WebSocket frames: a subscription is under way once its subscribe is sent.
  let subscribed;
  const subscribeSent = new Promise((resolve) => (subscribed = resolve));
  outcome.socketFrames = [];
  page.on("websocket", (socket) => {
    socket.on("framesent", ({ payload }) => {
      outcome.socketFrames.push(`sent ${String(payload).slice(0, 80)}`);
      if (String(payload).includes('"type":"subscribe"')) subscribed();
    });
    socket.on("framereceived", ({ payload }) =>
      outcome.socketFrames.push(`received ${String(payload).slice(0, 80)}`),
    );
  });
  page.on("console", (message) => {
    if (message.type() === "error") outcome.consoleErrors.push(message.text());
  });

  await page.goto(`${serverUrl}/graphql`, { waitUntil: "networkidle" });
  await page.waitForSelector(".graphiql-container .graphiql-query-editor .CodeMirror");
  outcome.headersEditor = await page
    .locator(".graphiql-editor-tool .graphiql-editor:not(.hidden)")
    .evaluateAll((nodes) => nodes.map((node) => node.textContent));

  // The API key goes into the headers editor, as the page's example says; then the schema
  // is fetched again with it, and the docs explorer shows the schema's root types.
  if (process.env.API_KEY) {
    const headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror";
    await page.locator(headers).click();
    await page.keyboard.press("Control+A");
    await page.keyboard.type(`{"Authorization": "Bearer ${process.env.API_KEY}"`, { delay: 2 });
    // GraphiQL takes in the edit after a short debounce, and keeps it in the page only (it is
    // not persisted): re-fetch the schema until the docs show it, for at most 20 s.
    const rootTypes = page.getByText("Root Types", { exact: false }).first();
    const deadline = Date.now() + 20000;
    do {
      await page.getByLabel("Re-fetch GraphQL schema").click();
      await rootTypes.waitFor({ timeout: 2000 }).catch(() => {});
    } while (!(await rootTypes.isVisible()) && Date.now() < deadline);
  }
  await page.waitForSelector(".graphiql-doc-explorer", { timeout: 20000 });
  await page.getByText("Root Types", { exact: false }).first().waitFor({ timeout: 20000 });
  outcome.docsShown = true;

  // Type the query into the editor, replacing the example.
  const editor = page.locator(".graphiql-query-editor .CodeMirror");
  await editor.click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(query, { delay: 5 });
  await page.keyboard.press("Escape"); // close any autocomplete hint
  outcome.typed = await editorText(page);
  await page.keyboard.press("Shift+Control+P"); // prettify, as people do before running
  await page.waitForFunction(
    (typed) =>
      document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue() !== typed,
    outcome.typed,
  );
  // GraphiQL takes in an edit (and the operation name in it) after a short debounce; it has
  // once it has stored the editor's text.
  await page.waitForFunction(
    (text) => localStorage.getItem("graphiql:query") === text,
    await editorText(page),
  );
  await page.keyboard.press("Escape"); // close the completion hint that prettify opened
  await page.waitForSelector(".CodeMirror-hints", { state: "detached" });
  await page.locator(".graphiql-execute-button").click();
  if (process.env.POST_ONCE_SUBSCRIBED) {
    const noSubscribe = new Promise((_, reject) =>
      setTimeout(() => reject(new Error("the page sent no subscribe within 20 s")), 20000).unref(),
    );
    await Promise.race([subscribeSent, noSubscribe]);
    const change = await fetch(`${serverUrl}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${process.env.API_KEY}` },
      body: process.env.POST_ONCE_SUBSCRIBED,
    });
    outcome.change = await change.json();
  }
  const response = page.locator(".graphiql-response .CodeMirror");
  await response.getByText(expected, { exact: false }).first().waitFor({ timeout: 20000 });
  outcome.result = await page.evaluate(
    () => document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue(),
  );
  // Whatever the page keeps in the browser's storage, after a whole session with the key.
  outcome.stored = await page.evaluate(() =>
    [localStorage, sessionStorage].flatMap((storage) =>
      Object.keys(storage).map((name) => `${name}=${storage.getItem(name)}`),
    ),
  );

} catch (error) {
  outcome.error = String(error);
} finally {
  await page.screenshot({ path: screenshot });
  await browser.close();
}
console.log(JSON.stringify(outcome));
process.exit(outcome.error || outcome.elsewhere.length ? 1 : 0);
