// The official `openai` npm client against `deepseek serve`: models, plain and streaming chat,
// reasoning_content (split and inline), usage, stop sequences, logprobs, n, seeds, legacy
// completions and the error responses. Prints "ok" or the failures; exits 1 on any failure.
// usage: node serve_openai.mjs MODULES_DIR BASE_URL API_KEY
import { createRequire } from "node:module";
import path from "node:path";

const [modules, base, key] = process.argv.slice(2);
const require = createRequire(path.join(modules, "x.js"));
const mod = require("openai");
const OpenAI = mod.OpenAI || mod.default || mod;
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0, timeout: 60000 });
const fails = [];
const check = (cond, what) => { if (!cond) fails.push(what); };
async function expectError(p, status, what, code) {
  try {
    await p;
    fails.push(what + ": no error");
  } catch (e) {
    check(e.status === status, `${what}: status ${e.status}, expected ${status} (${e.message})`);
    check(e.error && typeof e.error.message === "string" && e.error.type, `${what}: no OpenAI error object`);
    if (code) check(e.code === code, `${what}: code ${e.code}, expected ${code}`);
  }
}

const models = await client.models.list();
const model = models.data[0].id;
check(models.data.length === 1 && model, "models.list");
await expectError(new OpenAI({ baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0 }).models.list(), 401, "wrong API key", "invalid_api_key");

const messages = [{ role: "user", content: "What is 1+1?" }];
const plain = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
const msg = plain.choices[0].message;
check(plain.object === "chat.completion" && plain.choices.length === 1, "chat object");
check(msg.role === "assistant" && typeof msg.content === "string", "message");
// The R1 template opens <think>: a random model never closes it, so everything is reasoning.
check(typeof msg.reasoning_content === "string" && msg.reasoning_content.length > 0, "reasoning_content: " + JSON.stringify(msg));
check(plain.choices[0].finish_reason === "length", "finish_reason length");
check(plain.usage.completion_tokens === 12 && plain.usage.prompt_tokens > 5 &&
      plain.usage.total_tokens === plain.usage.prompt_tokens + 12, "usage " + JSON.stringify(plain.usage));

// Streaming gives the same text, with usage in a final chunk.
const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stream: true,
                                                       stream_options: { include_usage: true } });
let sr = "", sc = "", role = null, finish = null, usage = null, chunks = 0;
for await (const ch of stream) {
  chunks++;
  if (ch.usage) usage = ch.usage;
  const c = ch.choices[0];
  if (!c) continue;
  if (c.delta.role) role = c.delta.role;
  if (c.delta.reasoning_content) sr += c.delta.reasoning_content;
  if (c.delta.content) sc += c.delta.content;
  if (c.finish_reason) finish = c.finish_reason;
}
check(role === "assistant" && chunks > 3, "stream role/chunks");
check(sr === msg.reasoning_content && sc === msg.content, `stream text ${JSON.stringify(sr)} vs ${JSON.stringify(msg.reasoning_content)}`);
check(finish === "length", "stream finish_reason");
check(usage && usage.completion_tokens === 12 && usage.prompt_tokens === plain.usage.prompt_tokens, "stream usage");

// Inline: the thinking stays in content, opened by the tag the prompt put there.
const inl = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, reasoning_format: "inline" });
check(inl.choices[0].message.content === "<think>\n" + msg.reasoning_content && !("reasoning_content" in inl.choices[0].message),
      "inline reasoning: " + JSON.stringify(inl.choices[0].message));

// Stop sequences cut the output before the match, in both modes.
const text = msg.reasoning_content;
const stopAt = [...text].slice(Math.floor([...text].length / 2), Math.floor([...text].length / 2) + 2).join("");
const cut = text.slice(0, text.indexOf(stopAt));
const st = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stop: [stopAt, "never-seen"] });
check(st.choices[0].message.reasoning_content === cut && st.choices[0].finish_reason === "stop",
      `stop ${JSON.stringify(stopAt)}: ${JSON.stringify(st.choices[0])}`);
let sst = "", sfin = null;
for await (const ch of await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stop: stopAt, stream: true })) {
  const c = ch.choices[0];
  if (c && c.delta.reasoning_content) sst += c.delta.reasoning_content;
  if (c && c.finish_reason) sfin = c.finish_reason;
}
check(sst === cut && sfin === "stop", "streamed stop: " + JSON.stringify(sst));

// logprobs: greedy picks the most likely token.
const lp = await client.chat.completions.create({ model, messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3 });
const content = lp.choices[0].logprobs && lp.choices[0].logprobs.content;
check(content && content.length === 5, "logprobs length");
for (const t of content || []) {
  check(typeof t.token === "string" && t.logprob <= 0 && Array.isArray(t.bytes), "logprob entry");
  check(t.top_logprobs.length === 3 && t.top_logprobs[0].logprob === t.logprob &&
        t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob, "top_logprobs " + JSON.stringify(t));
}

// n choices and seeds: the same seed gives the same samples.
const req = { model, messages, max_tokens: 6, temperature: 1, seed: 42, n: 2 };
const a = await client.chat.completions.create(req), b = await client.chat.completions.create(req);
check(a.choices.length === 2 && a.choices[1].index === 1, "n=2");
check(a.usage.completion_tokens === 12, "n=2 usage");
check(JSON.stringify(a.choices.map((c) => c.message)) === JSON.stringify(b.choices.map((c) => c.message)), "seeded sampling reproducible");
const mct = await client.chat.completions.create({ model, messages, max_completion_tokens: 3, temperature: 0, some_future_field: { x: 1 } });
check(mct.usage.completion_tokens === 3, "max_completion_tokens, unknown fields ignored");

// Legacy completions.
const cmpl = await client.completions.create({ model, prompt: "Hello", max_tokens: 5, temperature: 0, logprobs: 2 });
check(cmpl.object === "text_completion" && typeof cmpl.choices[0].text === "string" && cmpl.usage.completion_tokens === 5, "completions");
check(cmpl.choices[0].logprobs.tokens.length === 5, "completions logprobs");
let ctext = "";
for await (const ch of await client.completions.create({ model, prompt: "Hello", max_tokens: 5, temperature: 0, stream: true }))
  if (ch.choices[0]) ctext += ch.choices[0].text;
check(ctext === cmpl.choices[0].text, "streamed completions");

// Errors: OpenAI-style objects with 4xx statuses.
await expectError(client.chat.completions.create({ model, messages, temperature: "hot" }), 400, "wrong type");
await expectError(client.chat.completions.create({ model, messages: [] }), 400, "empty messages");
await expectError(client.chat.completions.create({ model }), 400, "missing messages");
await expectError(client.chat.completions.create({ model: "gpt-4o", messages }), 404, "unknown model", "model_not_found");
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: "word ".repeat(5000) }] }),
                  400, "prompt longer than the context", "context_length_exceeded");
await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: "x".repeat(200000) }] }),
                  413, "body over the limit", "request_too_large");
await expectError(client.completions.create({ model, prompt: 7 }), 400, "completions prompt type");

console.log(fails.length ? fails.join("\n") : "ok");
process.exit(fails.length ? 1 : 0);
