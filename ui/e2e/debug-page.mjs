// End-to-end in real headless Chromium (Debian's, driven by playwright-core; never a downloaded browser).
//
//   node ui/e2e/debug-page.mjs upload        upload through the reference service's page, open the trace it
//                                            shows, sign in, check the waterfall and the log lines, screenshots
//   node ui/e2e/debug-page.mjs wrong-token   a shared link with a wrong token: 401, and the page says so
//
// Environment: APP_URL (the reference service), TOKEN (its OTEL_RAG_DEBUG_TOKEN), DOCUMENT (a file to upload),
// ARTIFACTS (where screenshots go). Prints one JSON line of findings; exits non-zero on the first failed check.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { APP_URL, TOKEN, DOCUMENT, ARTIFACTS } = process.env;
const mode = process.argv[2];
assert.ok(APP_URL && ARTIFACTS, "APP_URL and ARTIFACTS are required");
mkdirSync(ARTIFACTS, { recursive: true });

const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const UPLOAD_SPANS = [
  "POST /documents",
  "rag.upload",
  "rag.parse",
  "rag.chunk",
  "embeddings text-embedding-3-small",
  "rag.index",
];

function watchRequests(page) {
  const foreign = [];
  const problems = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(APP_URL) && !request.url().startsWith("data:")) foreign.push(request.url());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  return { foreign, problems };
}

async function openTraceUntilStored(page) {
  // The service writes spans to Postgres within a moment of the response; reload until the trace is there.
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const outcome = await Promise.race([
      page.locator(".waterfall li").first().waitFor().then(() => "waterfall"),
      page.getByText("is not in the store").waitFor().then(() => "missing"),
    ]);
    if (outcome === "waterfall") return;
    await page.waitForTimeout(250);
    await page.reload();
  }
  throw new Error("the trace never reached the store");
}

async function upload(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const watched = watchRequests(page);
  await page.goto(`${APP_URL}/`);
  await page.setInputFiles("#file", DOCUMENT);
  await page.fill("#user", "ana");
  await page.getByRole("button", { name: "Upload" }).click();
  const badge = page.getByTestId("trace-id");
  await badge.waitFor();
  const traceId = await badge.getAttribute("data-trace-id");
  assert.match(traceId, /^[0-9a-f]{32}$/);
  await page.screenshot({ path: `${ARTIFACTS}/upload-page.png` });

  await page.getByRole("link", { name: "Open trace" }).click();
  await page.waitForURL(`**/debug/trace/${traceId}`);
  await page.getByLabel("Debug token (OTEL_RAG_DEBUG_TOKEN)").fill(TOKEN);
  await page.keyboard.press("Enter");
  await openTraceUntilStored(page);
  assert.equal(await page.getByTestId("trace-heading").textContent(), traceId);

  const rows = page.locator(".waterfall .row");
  const names = await rows.evaluateAll((elements) => elements.map((element) => element.dataset.spanName));
  assert.deepEqual(names.slice(0, 2), UPLOAD_SPANS.slice(0, 2));
  assert.deepEqual([...names].sort(), [...UPLOAD_SPANS].sort());
  const durations = await page.getByTestId("span-duration").allTextContents();
  assert.equal(durations.length, UPLOAD_SPANS.length);
  for (const duration of durations) assert.match(duration, /^\d+(\.\d+)? (µs|ms|s)$/);
  const widths = await page.locator(".waterfall .bar").evaluateAll((bars) => bars.map((bar) => bar.style.width));
  assert.equal(widths[0], "100%", "the root span spans the whole trace");

  // keyboard: from the first row, down to rag.parse; its details show its log line
  await rows.first().focus();
  const parseIndex = names.indexOf("rag.parse");
  for (let step = 0; step < parseIndex; step += 1) await page.keyboard.press("ArrowDown");
  assert.equal(await page.locator('.waterfall .row[aria-pressed="true"]').getAttribute("data-span-name"), "rag.parse");
  assert.equal(await page.locator(".details h2").textContent(), "rag.parse");
  const parseLogs = await page.getByTestId("log-line").allTextContents();
  assert.ok(parseLogs.some((line) => line.includes("parse.done")), `parse.done not in ${parseLogs}`);
  await rows.nth(names.indexOf("POST /documents")).click();
  const rootLogs = await page.getByTestId("log-line").allTextContents();
  assert.ok(rootLogs.length > 0, "the request's own log lines are listed");
  const summary = await page.locator(".summary").textContent();
  assert.match(summary, /Slowest stage/);
  assert.match(summary, /Cost\$\d/);
  await page.screenshot({ path: `${ARTIFACTS}/debug-trace-1280.png`, fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px at 390px`);
  await page.screenshot({ path: `${ARTIFACTS}/debug-trace-390.png`, fullPage: true });

  // the home page, signed in (session storage keeps the token for this tab)
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${APP_URL}/debug/`);
  await page.getByRole("heading", { name: "Recent and slow traces" }).waitFor();
  await page.getByTestId("trace-row").first().waitFor();
  const listed = await page.locator('[data-testid="trace-row"] a').evaluateAll((links) => links.map((a) => a.dataset.traceId));
  assert.ok(listed.includes(traceId), "the upload is among the recent traces");
  const requests = await page.locator('[data-testid="trace-row"] td:nth-child(2)').allTextContents();
  assert.ok(!requests.some((name) => name.includes("/debug/")), `the debug page traced itself: ${requests}`);
  await page.screenshot({ path: `${ARTIFACTS}/debug-home.png`, fullPage: true });

  assert.deepEqual(watched.foreign, [], "no request may leave the service's origin");
  assert.deepEqual(watched.problems, []);
  await context.close();
  return { traceId, names, durations };
}

async function wrongToken(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const watched = watchRequests(page);
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  await page.goto(`${APP_URL}/debug/trace/${traceId}?token=not-the-token`);
  const alert = page.locator(".sign-in [role=alert]");
  await alert.waitFor();
  const message = await alert.textContent();
  assert.match(message, /401/);
  assert.match(message, /token is not valid/);
  assert.ok(!page.url().includes("token="), `the token stayed in the address bar: ${page.url()}`);
  const api = await page.request.get(`${APP_URL}/debug/api/traces/${traceId}`, {
    headers: { Authorization: "Bearer not-the-token" },
  });
  assert.equal(api.status(), 401);
  assert.equal((await api.json()).error, "the token is not valid for this debug API");
  await page.screenshot({ path: `${ARTIFACTS}/debug-wrong-token.png` });
  assert.deepEqual(watched.foreign, []);
  await context.close();
  return { message, status: api.status() };
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_FLAGS });
try {
  const findings = mode === "upload" ? await upload(browser) : mode === "wrong-token" ? await wrongToken(browser) : null;
  assert.ok(findings, `unknown mode ${mode}: use upload or wrong-token`);
  console.log(JSON.stringify({ mode, ...findings }));
} finally {
  await browser.close();
}
