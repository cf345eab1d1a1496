// Continuous batching seen from clients: 8 greedy streams at once get exactly what each gets
// alone (text and logprobs, bit for bit); a client killed mid-stream frees its slot at once and
// does not disturb the others. usage: node serve_concurrency.mjs BASE_URL
import { spawn } from "node:child_process";

const base = process.argv[2];
const fails = [];
const check = (cond, what) => { if (!cond) fails.push(what); };

async function streamChat(content, extra = {}) {
  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content }], max_tokens: 40, temperature: 0, stream: true,
                           logprobs: true, top_logprobs: 2, ...extra }),
  });
  if (r.status !== 200) return { error: r.status + " " + (await r.text()) };
  const dec = new TextDecoder();
  let buf = "", reasoning = "", text = "", lps = [], finish = null;
  for await (const chunk of r.body) buf += dec.decode(chunk, { stream: true });
  for (const line of buf.split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    const c = JSON.parse(line.slice(6)).choices[0];
    if (!c) continue;
    reasoning += c.delta.reasoning_content || "";
    text += c.delta.content || "";
    if (c.logprobs) lps.push(...c.logprobs.content.map((t) => [t.token, t.logprob, t.top_logprobs.map((a) => a.logprob)]));
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { reasoning, text, lps: JSON.stringify(lps), finish };
}

const health = async () => (await fetch(base + "/health")).json();

// A client in its own process, SIGKILLed after its first chunk: the server only sees the
// connection drop.
function killedClient() {
  const code = `
    const r = await fetch(${JSON.stringify(base)} + "/v1/chat/completions", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "never finish" }], max_tokens: 3000,
                             ignore_eos: true, temperature: 0, stream: true }) });
    for await (const c of r.body) { console.log("first"); await new Promise((res) => setTimeout(res, 1e6)); }`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve) => {
    child.stdout.on("data", () => { child.kill("SIGKILL"); resolve(); });
    child.on("exit", resolve);
  });
}

// Prompts of different lengths, so prefill chunks and decode steps interleave differently.
const prompts = Array.from({ length: 8 }, (_, i) => `Question ${i}: ` + "tell me more about the sea and the sky ".repeat(1 + 5 * i));

const alone = [];
for (const p of prompts) alone.push(await streamChat(p));
for (const a of alone) check(!a.error && a.finish === "length" && a.reasoning.length > 0, "alone: " + JSON.stringify(a).slice(0, 300));

// A killed client frees its slot: 3000 tokens would take many seconds.
await killedClient();
let freed = false;
for (let i = 0; i < 40 && !freed; i++) {
  const h = await health();
  freed = h.slots_busy === 0 && h.queued === 0;
  if (!freed) await new Promise((r) => setTimeout(r, 50));
}
check(freed, "the killed client's slot was not freed within 2 s: " + JSON.stringify(await health()));

// All at once (more than the slots: some wait in the queue), with a client killed meanwhile.
const [together] = await Promise.all([Promise.all(prompts.map((p) => streamChat(p))), killedClient()]);
for (let i = 0; i < prompts.length; i++) {
  const a = alone[i], t = together[i];
  check(t.reasoning === a.reasoning && t.text === a.text, `stream ${i}: text differs among others:\n  ${JSON.stringify(t.reasoning)}\n  ${JSON.stringify(a.reasoning)}`);
  check(t.lps === a.lps, `stream ${i}: logprobs differ among others`);
}
let h;
for (let i = 0; i < 40; i++) {
  h = await health();
  if (h.slots_busy === 0 && h.queued === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
check(h.slots_busy === 0 && h.queued === 0, "slots stuck: " + JSON.stringify(h));
console.log(fails.length ? fails.join("\n") : "ok");
process.exit(fails.length ? 1 : 0);
