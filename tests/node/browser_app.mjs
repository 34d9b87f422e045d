// Drives the example app (examples/browser-app) in headless Chromium (Debian's /usr/bin/chromium)
// as a person would: signs in with the identity provider, then clicks through one scenario.
// Chromium may resolve no host but this machine; every request to the API is recorded with its
// answer or its failure. Prints one JSON line; saves a screenshot.
//
// Usage: node tests/node/browser_app.mjs APP_URL API_URL SCENARIO SCREENSHOT PARAMS_JSON
//   PARAMS.signIn: {customer: ID} or {staff: NAME, scopes: [...]}, chosen on the sign-in form
//   full     create PARAMS.id (PARAMS.email), read it, update its city, start its KYC
//   self     read PARAMS.id, update it, start its KYC; read and update PARAMS.other
//   blocked  read PARAMS.id from an origin the API does not allow
//   persisted create PARAMS.id, read it, read it twice more from the network, then send a
//            document the app was not built with: what each request sent (hash, document)
//            and what the API answered (status, error codes) is recorded
import { launchChromium } from "./chromium.mjs";

const [appUrl, apiUrl, scenario, screenshot, paramsJson] = process.argv.slice(2);
const params = JSON.parse(paramsJson);

const browser = await launchChromium();
const outcome = { scenario, api: [], elsewhere: [], consoleErrors: [], steps: {} };
const page = await browser.newPage({ viewport: { width: 1000, height: 1000 } });

const text = (id) => page.locator(`#${id}`).textContent();
let started = 0; // requests to the API sent; outcome.api holds those answered (or failed)
// What a request to the API sent: a GET's parameters, or a POST's JSON body.
const sentOf = (request) => {
  if (request.method() !== "GET") return JSON.parse(request.postData() || "{}");
  const params = new URL(request.url()).searchParams;
  const extensions = params.get("extensions");
  return {
    operationName: params.get("operationName"),
    query: params.get("query"),
    extensions: extensions ? JSON.parse(extensions) : undefined,
  };
};
const kindOf = (sent) =>
  sent.extensions?.persistedQuery ? (sent.query ? "document and hash" : "hash") : "document";
// Until every request sent has been answered and recorded.
const settled = async () => {
  const deadline = Date.now() + 15000;
  while (outcome.api.length < started && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};
const until = (id, expected) =>
  page.waitForFunction(
    ([id, expected]) => (document.getElementById(id)?.textContent ?? "").startsWith(expected),
    [id, expected],
    { timeout: 15000 },
  );
// Clicks a button and waits until the element shows what is expected.
const step = async (name, button, id, expected) => {
  const before = outcome.api.length;
  await page.locator(`#${button}`).click();
  await until(id, expected);
  await settled();
  outcome.steps[name] = {
    shown: await text(id),
    kycStatus: await text("kycStatus"),
    userErrors: await text("user-errors"),
    other: await text("other"),
    requests: outcome.api.slice(before).map((r) => r.operation),
    calls: outcome.api.slice(before).map(({ method, sent, status, codes }) => ({
      method,
      sent,
      status,
      codes,
    })),
  };
};

try {
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith("http://127.0.0.1") && !url.startsWith("data:")) outcome.elsewhere.push(url);
  });
  page.on("request", (request) => {
    if (request.url().startsWith(apiUrl)) started += 1;
  });
  page.on("requestfinished", async (request) => {
    if (!request.url().startsWith(apiUrl)) return;
    const response = await request.response();
    const sent = sentOf(request);
    let codes = [];
    try {
      codes = ((await response.json()).errors ?? []).map((error) => error.extensions?.code);
    } catch {
      codes = ["(not JSON)"];
    }
    outcome.api.push({
      method: request.method(),
      operation: sent.operationName,
      sent: kindOf(sent),
      status: response?.status(),
      codes,
      allowOrigin: response ? await response.headerValue("access-control-allow-origin") : null,
    });
  });
  page.on("requestfailed", (request) => {
    if (!request.url().startsWith(apiUrl)) return;
    outcome.api.push({
      method: request.method(),
      operation: sentOf(request).operationName,
      failure: request.failure()?.errorText,
    });
  });
  page.on("console", (message) => {
    if (message.type() === "error") outcome.consoleErrors.push(message.text());
  });

  await page.goto(appUrl);
  await page.locator("#sign-in").click(); // to the provider's form
  // The development identity provider's form: a customer by id, or staff with chosen scopes.
  await page.waitForSelector("#idp-sign-in", { timeout: 15000 });
  if (params.signIn.customer) {
    await page.fill("#external_customer_id", params.signIn.customer);
  } else {
    await page.check("#staff");
    await page.fill("#subject", params.signIn.staff);
    for (const box of await page.locator("input[name=scope]").all()) {
      await box.setChecked(params.signIn.scopes.includes(await box.getAttribute("value")));
    }
  }
  await page.locator("#idp-sign-in").click(); // back to the app with a token
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });
  outcome.who = await text("who");
  outcome.tokenInAddressBar = page.url().includes("access_token");

  await page.fill("#externalCustomerId", params.id);
  if (scenario === "full") {
    await page.fill("#email", params.email);
    await step("create", "create", "done", "created");
    await step("read", "read", "shownExternalId", params.id);
    await page.fill("#city", params.city);
    await step("update", "update", "shownCity", params.city);
    await step("startKyc", "start-kyc", "kycStatus", "PENDING");
  } else if (scenario === "self") {
    await step("read", "read", "shownExternalId", params.id);
    await page.fill("#city", params.city);
    await step("update", "update", "shownCity", params.city);
    await step("startKyc", "start-kyc", "done", "verification");
    await page.fill("#otherId", params.other);
    await step("readOther", "read-other", "done", "read the other");
    await step("updateOther", "update-other", "done", "updated the other");
  } else if (scenario === "persisted") {
    await page.fill("#email", params.email);
    await step("create", "create", "done", "created");
    await step("read", "read", "shownExternalId", params.id);
    await page.fill("#otherId", params.id);
    await step("readAgain", "read-other", "done", "read the other");
    await page.locator("#done").evaluate((done) => (done.textContent = "-"));
    await step("readOnceMore", "read-other", "done", "read the other");
    await step("adHoc", "ad-hoc", "done", "sent the ad-hoc document");
    outcome.adHoc = await text("ad-hoc-answer");
  } else {
    await step("read", "read", "error", "TypeError"); // the browser's "Failed to fetch"
  }
  outcome.shown = {
    id: await text("id"),
    externalCustomerId: await text("shownExternalId"),
    city: await text("shownCity"),
    kycStatus: await text("kycStatus"),
    other: await text("other"),
    error: await text("error"),
  };
} catch (error) {
  outcome.error = String(error);
} finally {
  await page.screenshot({ path: screenshot, fullPage: true });
  await browser.close();
}
console.log(JSON.stringify(outcome));
process.exit(outcome.error || outcome.elsewhere.length ? 1 : 0);
