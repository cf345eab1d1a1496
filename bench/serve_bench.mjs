// Serving benchmark: `deepseek serve` with continuous batching. The same 16 requests (a prompt of
// ~100 tokens, 64 greedy tokens each, EOS ignored) run one after another, then 4 and 16 at a
// time; prints aggregate generation tokens/s and time-to-first-token percentiles.
// usage: node serve_bench.mjs DEEPSEEK_BIN MODEL_DIR [THREADS]
import { spawn } from "node:child_process";

const [bin, model, threads = "2"] = process.argv.slice(2);
const N_REQ = 16, MAX_TOKENS = 64;
const srv = spawn(bin, ["serve", "-m", model, "--port", "0", "--parallel", "16", "--ctx", "512", "-t", threads],
                  { stdio: ["ignore", "ignore", "pipe"] });
// Never leave the server behind, whatever ends this script.
process.on("exit", () => srv.kill("SIGKILL"));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));
const base = await new Promise((resolve, reject) => {
  let err = "";
  srv.stderr.on("data", (d) => {
    err += d;
    const m = /listening on (http:\/\/[^ ]+?)\/ /.exec(err);
    if (m) resolve(m[1]);
  });
  srv.on("exit", () => reject(new Error("server exited: " + err)));
});

const prompts = Array.from({ length: N_REQ }, (_, i) => `Request ${String(i).padStart(2, "0")}: ` + "the quick brown fox jumps over the lazy dog. ".repeat(2));

async function one(prompt) {
  const t0 = performance.now();
  const r = await fetch(base + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    // logprobs: a random model mostly samples ids outside the byte tokenizer (no text), and
    // with logprobs every token still makes a chunk, so the first one times the first token.
    body: JSON.stringify({ prompt, max_tokens: MAX_TOKENS, temperature: 0, ignore_eos: true, stream: true,
                           logprobs: 0, stream_options: { include_usage: true } }),
  });
  const dec = new TextDecoder();
  let ttft = null, buf = "", tokens = 0;
  for await (const chunk of r.body) {
    if (ttft === null) {
      const s = dec.decode(chunk, { stream: true });
      buf += s;
      if (buf.includes('"token_logprobs"')) ttft = performance.now() - t0;
    } else buf += dec.decode(chunk, { stream: true });
  }
  const m = /"completion_tokens":(\d+)/.exec(buf);
  if (m) tokens = Number(m[1]);
  return { ttft: ttft ?? performance.now() - t0, tokens };
}

async function run(streams) {
  let next = 0;
  const res = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: streams }, async () => {
    while (next < N_REQ) res.push(await one(prompts[next++]));
  }));
  const secs = (performance.now() - t0) / 1000;
  const tt = res.map((r) => r.ttft).sort((a, b) => a - b);
  const pct = (p) => tt[Math.min(tt.length - 1, Math.floor((p / 100) * tt.length))];
  return { streams, tok_s: res.reduce((s, r) => s + r.tokens, 0) / secs, secs, p50: pct(50), p90: pct(90), max: tt[tt.length - 1] };
}

await one(prompts[0]); // warm-up: page in the weights
const rows = [];
for (const s of [1, 4, 16]) rows.push(await run(s));
console.log(`serve bench-100m (${model.split("/").pop()}), ${threads} threads, ${N_REQ} requests x ${MAX_TOKENS} tokens, prompt ~100 tokens`);
console.log("streams | gen tok/s | vs sequential | wall s | TTFT p50 ms | TTFT p90 ms | TTFT max ms");
for (const r of rows)
  console.log(`${String(r.streams).padStart(7)} | ${r.tok_s.toFixed(1).padStart(9)} | ${(r.tok_s / rows[0].tok_s).toFixed(2).padStart(12)}x | ${r.secs.toFixed(1).padStart(6)} | ${r.p50.toFixed(0).padStart(11)} | ${r.p90.toFixed(0).padStart(11)} | ${r.max.toFixed(0).padStart(11)}`);
srv.kill("SIGTERM");
