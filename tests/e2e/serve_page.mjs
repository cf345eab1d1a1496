// The chat page in headless Chromium (Debian's, driven by playwright-core): type a message, see
// a streamed reply with its reasoning block, stop a long reply with the stop button, keep a
// screenshot. usage: node serve_page.mjs MODULES_DIR BASE_URL CHROMIUM SCREENSHOT
import { createRequire } from "node:module";
import path from "node:path";

const [modules, base, chromiumPath, shot] = process.argv.slice(2);
const { chromium } = createRequire(path.join(modules, "x.js"))("playwright-core");
const fails = [];
const check = (cond, what) => { if (!cond) fails.push(what); };

const browser = await chromium.launch({ executablePath: chromiumPath, headless: true,
                                        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.waitForFunction(() => !document.getElementById("model").textContent.startsWith("…"));
  check((await page.textContent("#model")).includes("context"), "model name shown");
  await page.fill("#maxtok", "24");
  await page.fill("#temp", "0");

  // Count the updates of the reply while it streams: more than one means it arrived in pieces.
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver(() => window.updates++).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
  });
  await page.fill("#input", "What is 1+1?");
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.assistant[data-done='1']", { timeout: 30000 });
  const reasoning = await page.textContent(".msg.assistant details.reasoning .reasoning-text");
  check(reasoning && reasoning.length > 0, "reasoning block filled");
  check(await page.isVisible(".msg.assistant details.reasoning summary"), "reasoning block visible");
  check((await page.textContent(".msg.user")) === "What is 1+1?", "user message shown");
  check((await page.evaluate(() => window.updates)) > 5, "reply streamed in pieces");
  check((await page.textContent(".msg.assistant .meta")).includes("24 tokens"), "usage shown: " + await page.textContent(".msg.assistant .meta"));
  await page.screenshot({ path: shot, fullPage: true });
  // The reasoning block collapses.
  await page.click(".msg.assistant details.reasoning summary");
  check(!(await page.evaluate(() => document.querySelector(".msg.assistant details.reasoning").open)), "reasoning block collapses");

  // A long reply, stopped: the page says so and the server frees the slot.
  await page.fill("#maxtok", "3000");
  await page.fill("#input", "Tell me a very long story");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .reasoning-text")[1]?.textContent.length > 0);
  await page.click("#stop");
  await page.waitForSelector(".msg.assistant:nth-of-type(4)[data-done='1']", { timeout: 10000 });
  check((await page.textContent(".msg.assistant:nth-of-type(4) .meta")).includes("stopped"), "stop button");
  let h;
  for (let i = 0; i < 40; i++) {
    h = await (await fetch(base + "/health")).json();
    if (h.slots_busy === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(h.slots_busy === 0, "slot freed after stop: " + JSON.stringify(h));
  check((await page.$$(".msg")).length === 4, "conversation kept in the page");
  check(errors.length === 0, "page errors: " + errors.join("; "));
} finally {
  await browser.close();
}
console.log(fails.length ? fails.join("\n") : "ok");
process.exit(fails.length ? 1 : 0);
