// Opens the dashboard in headless Chromium (the system browser, driven over CDP by
// puppeteer-core) and reports what a person sees on it, as JSON on stdout:
//   node tests/browser/dashboard.mjs <url> <screenshot.png>
// It waits for the page's sections to render, then reads each section's visible text, the
// rows of the approvals and exception tables, the chart bars that are drawn with a visible
// size, and the links to the Temporal Web UI, and saves a full-page screenshot.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, ".tools", "package.json"));
const puppeteer = require("puppeteer-core");

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: dashboard.mjs <url> <screenshot.png>");
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
  const response = await page.goto(url, { waitUntil: "load", timeout: 30000 });
  await page.waitForSelector("main section h2", { visible: true, timeout: 30000 });
  const seen = await page.evaluate(() => {
    const visible = (el) => {
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
    };
    const rows = (sel) =>
      [...document.querySelectorAll(`${sel} tr`)]
        .slice(1)
        .filter(visible)
        .map((tr) => [...tr.querySelectorAll("td")].map((td) => td.innerText.trim()));
    const sections = {};
    for (const s of document.querySelectorAll("main section")) {
      if (visible(s)) sections[s.id] = s.innerText;
    }
    const charts = {};
    for (const svg of document.querySelectorAll("svg.chart")) {
      const bars = [...svg.querySelectorAll("rect.bar")].filter(visible);
      charts[svg.id] = {
        bars: bars.length,
        labels: [...new Set(bars.map((b) => b.getAttribute("data-label")))],
        width: svg.getBoundingClientRect().width,
      };
    }
    return {
      title: document.title,
      header: document.querySelector("header")?.innerText ?? "",
      sections,
      approvals: rows("#approvals"),
      exceptions: rows("#exceptions"),
      readiness: rows("#readiness"),
      kpis: rows("#kpi-table"),
      charts,
      links: [...document.querySelectorAll("a.promo")].map((a) => a.href),
      scripts: document.querySelectorAll("script").length,
    };
  });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ status: response.status(), ...seen }));
} finally {
  await browser.close();
}
