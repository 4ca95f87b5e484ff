// Headless Chromium (the system's, never a downloaded one) opens a page of one origin whose
// script calls an ltxtune server of another origin with @fal-ai/client.
// argv[2]: {"page": URL of the page, "server": ltxtune URL, "key": API key, "chromium": path}.
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";

const args = JSON.parse(process.argv[2]);
const bundle = await build({ entryPoints: ["browser-entry.mjs"], bundle: true, write: false, format: "iife", platform: "browser" });
writeFileSync(args.bundlePath, bundle.outputFiles[0].text);

const browser = await chromium.launch({ executablePath: args.chromium, args: ["--disable-gpu", "--no-sandbox"] });
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const consoleLines = [];
  page.on("console", (message) => consoleLines.push(message.text()));
  await page.goto(args.page);
  await page.waitForFunction(() => typeof window.runFal === "function");
  const result = await page.evaluate((config) => window.runFal(config), { server: args.server, key: args.key });
  console.log(JSON.stringify({ ...result, console: consoleLines }));
} finally {
  await browser.close();
}
