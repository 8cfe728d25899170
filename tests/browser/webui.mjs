// Opens a workflow's page in the Temporal Web UI in headless Chromium (the system browser,
// driven over CDP by puppeteer-core), waits until its Input panel shows `expect` — which, for a
// compressed input, needs the UI's codec server — and reports what it saw as JSON on stdout:
//   node tests/browser/webui.mjs <workflow page url> <expected text> <screenshot.png>
// The report has the page's visible text, the codec server calls the page made, and whether
// the compressed encoding (`binary/zlib`) was shown anywhere.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, ".tools", "package.json"));
const puppeteer = require("puppeteer-core");

const [url, expect, shot] = process.argv.slice(2);
if (!url || !expect || !shot) {
  console.error("usage: webui.mjs <workflow page url> <expected text> <screenshot.png>");
  process.exit(2);
}
const executablePath =
  process.env.PROMO_CHROMIUM ||
  ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(existsSync);
if (!executablePath) {
  console.error("no Chromium found: install the Debian package `chromium` or set PROMO_CHROMIUM");
  process.exit(2);
}

const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  const codecCalls = [];
  page.on("response", (r) => {
    if (r.url().includes("/codec/") && r.request().method() === "POST") {
      codecCalls.push({ url: r.url(), status: r.status() });
    }
  });
  await page.goto(url, { waitUntil: "load", timeout: 60000 });
  let found = true;
  try {
    await page.waitForFunction((t) => document.body.innerText.includes(t), { timeout: 60000 }, expect);
  } catch {
    found = false;
  }
  const text = await page.evaluate(() => document.body.innerText);
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ found, codecCalls, zlibShown: text.includes("binary/zlib"), text }));
} finally {
  await browser.close();
}
