// The debug page's pictures in real headless Chromium (Debian's, driven by playwright-core), on a store the
// reference service's traffic filled (tests/test_questions.py):
//
//   node ui/e2e/questions.mjs overview   the health strip, four charts drawn, the quality drop named, a point
//                                        chosen by keyboard and by mouse lists the traces behind it, one opens;
//                                        390 px wide without sideways scrolling
//   node ui/e2e/questions.mjs compare    /debug/compare?by=rag.chunk.size: the verdict, the groups, the distribution
//
// Environment: APP_URL (otel-rag serve), TOKEN, SINCE and UNTIL (the traffic's window), ARTIFACTS (screenshots).
// Prints one JSON line of findings; exits non-zero on the first failed check.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { APP_URL, TOKEN, SINCE, UNTIL, ARTIFACTS } = process.env;
const mode = process.argv[2];
assert.ok(APP_URL && TOKEN && SINCE && UNTIL && ARTIFACTS, "APP_URL, TOKEN, SINCE, UNTIL and ARTIFACTS are required");
mkdirSync(ARTIFACTS, { recursive: true });
const WINDOW = `since=${encodeURIComponent(SINCE)}&until=${encodeURIComponent(UNTIL)}`;

async function open(browser, path, width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  const foreign = [];
  const problems = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(APP_URL) && !request.url().startsWith("data:")) foreign.push(request.url());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  await page.goto(`${APP_URL}${path}${path.includes("?") ? "&" : "?"}token=${TOKEN}`);
  return { context, page, foreign, problems };
}

/** Pixels a chart's canvas has drawn (not blank): a chart that failed to render draws nothing. */
async function drawnPixels(plot) {
  return plot.locator("canvas").evaluate((canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) drawn += 1;
    return drawn;
  });
}

function chart(page, title) {
  return page.locator("figure.chart").filter({ has: page.locator("figcaption", { hasText: title }) });
}

async function noSidewaysScroll(page) {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px at ${page.viewportSize().width}px`);
}

async function overview(browser) {
  const { context, page, foreign, problems } = await open(browser, `/debug/?${WINDOW}`);
  const status = page.getByTestId("health-status");
  await status.waitFor();
  const health = await status.textContent();
  assert.ok(["HEALTHY", "DEGRADED", "DOWN"].includes(health), health);
  const titles = ["Requests and errors", "Latency p95", "Answer quality", "Cost per hour by model"];
  const pixels = {};
  for (const title of titles) {
    const plot = chart(page, title).locator(".plot");
    await plot.locator("canvas").waitFor();
    pixels[title] = await drawnPixels(plot);
    assert.ok(pixels[title] > 2000, `${title} drew ${pixels[title]} pixels`);
  }
  const verdict = await page.getByTestId("quality-verdict").textContent();
  assert.match(verdict, /^Quality dropped at .*: hallucination \d+\.\d% → \d+\.\d%/);
  await page.screenshot({ path: `${ARTIFACTS}/overview-1280.png` });

  // keyboard: Tab to the quality chart, End (the last bucket), one step back: its hallucinated answers are listed
  const quality = chart(page, "Answer quality");
  await page.getByLabel("Trace id").focus();
  let focused = "";
  for (let step = 0; step < 40 && !focused.startsWith("Answer quality"); step += 1) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? "");
  }
  assert.match(focused, /^Answer quality/, "the quality chart is reachable with Tab");
  await page.keyboard.press("End");
  await page.keyboard.press("ArrowLeft");
  const point = await quality.getByTestId("chart-point").textContent();
  assert.match(point, /\d+ answers, [1-9]\d* hallucinated/, point);
  const behind = page.getByTestId("behind");
  await behind.getByRole("heading", { name: /^Hallucinated answers/ }).waitFor();
  await behind.getByTestId("behind-trace").first().waitFor();
  const hallucinated = await behind.getByTestId("behind-trace").count();
  await page.screenshot({ path: `${ARTIFACTS}/overview-hallucinated.png`, fullPage: false });

  // mouse: a point of the latency chart lists the slowest requests of its bucket
  const latency = chart(page, "Latency p95").locator(".plot");
  const box = await latency.locator(".u-over").boundingBox();
  await page.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await behind.getByRole("heading", { name: /^Slowest requests/ }).waitFor();
  await behind.getByTestId("behind-trace").first().waitFor();
  const link = behind.locator("a.trace-link").first();
  const traceId = await link.getAttribute("data-trace-id");
  await link.click();
  await page.waitForURL(`**/debug/trace/${traceId}`);
  await page.locator(".waterfall li").first().waitFor();

  await page.goto(`${APP_URL}/debug/?${WINDOW}`);
  await page.getByTestId("health-status").waitFor();
  await page.setViewportSize({ width: 390, height: 844 });
  await chart(page, "Answer quality").locator("canvas").waitFor();
  await page.waitForTimeout(300); // the charts follow the new width
  await noSidewaysScroll(page);
  const narrow = await drawnPixels(chart(page, "Answer quality").locator(".plot"));
  assert.ok(narrow > 1000, `the quality chart drew ${narrow} pixels at 390px`);
  await page.screenshot({ path: `${ARTIFACTS}/overview-390.png` });
  assert.deepEqual(foreign, [], "no request may leave the page's origin");
  assert.deepEqual(problems, []);
  await context.close();
  return { health, verdict, pixels, hallucinated, traceId };
}

async function compare(browser) {
  const { context, page, foreign, problems } = await open(browser, `/debug/compare?by=rag.chunk.size&${WINDOW}`);
  const verdict = page.getByTestId("verdict").first();
  await verdict.waitFor();
  const line = await verdict.textContent();
  assert.match(line, /^rag\.chunk\.size (60|120) vs (60|120): p95 [+-]\d+% \[/);
  const groups = await page.getByTestId("compare-group").locator("th").allTextContents();
  assert.deepEqual(groups.map((name) => name.replace(/\D+/g, "")).sort(), ["120", "60"]);
  const plot = chart(page, "Latency distribution").locator(".plot");
  await plot.locator("canvas").waitFor();
  const pixels = await drawnPixels(plot);
  assert.ok(pixels > 2000, `the distribution drew ${pixels} pixels`);
  await page.screenshot({ path: `${ARTIFACTS}/compare-1280.png` });
  await page.getByLabel("By attribute").fill("service.version");
  await page.keyboard.press("Enter");
  await page.getByText("Compare requests by service.version").waitFor();
  await page.getByTestId("verdict").first().waitFor();
  const versions = await page.getByTestId("verdict").first().textContent();
  assert.match(versions, /^service\.version 1\.\d\.0 vs 1\.\d\.0: /);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await noSidewaysScroll(page);
  await page.screenshot({ path: `${ARTIFACTS}/compare-390.png`, fullPage: true });
  assert.deepEqual(foreign, []);
  assert.deepEqual(problems, []);
  await context.close();
  return { verdict: line, groups, versions };
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
});
try {
  const findings = mode === "overview" ? await overview(browser) : mode === "compare" ? await compare(browser) : null;
  assert.ok(findings, `unknown mode ${mode}: use overview or compare`);
  console.log(JSON.stringify({ mode, ...findings }));
} finally {
  await browser.close();
}
