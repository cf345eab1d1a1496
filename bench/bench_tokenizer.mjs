// transformers.js (npm @lenml/tokenizers) encode throughput on the same text as
// bench_tokenizer.c: the fixture texts joined and repeated to ~MB megabytes, in 64 KB chunks.
//   node bench/bench_tokenizer.mjs [cache/npm [fixture.jsonl [MB]]]
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const cache = process.argv[2] || "build/cache/npm";
const fixture = process.argv[3] || "tests/fixtures/tokenizer/deepseek_v3.jsonl";
const mb = Number(process.argv[4] || 20);
const mod = path.resolve(cache, "node_modules/@lenml");
const { TokenizerLoader } = await import(pathToFileURL(path.join(mod, "tokenizers/dist/main.mjs")).href);
const dir = path.join(mod, "tokenizer-deepseek_v3/models");

let t0 = performance.now();
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
});
const loadS = (performance.now() - t0) / 1000;
const corpus = fs.readFileSync(fixture, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l).text + "\n").join("");
const buf = Buffer.from(corpus, "utf8");
const want = mb * 1e6;
const parts = [];
let total = 0;
while (total < want) parts.push(buf), (total += buf.length);
const text = Buffer.concat(parts);
// Chunks cut at 64 KB, moved back to a UTF-8 char start so JS strings stay valid.
let ntok = 0;
t0 = performance.now();
for (let off = 0; off < total;) {
  let end = Math.min(off + 65536, total);
  while (end < total && (text[end] & 0xc0) === 0x80) end--;
  ntok += tok.encode(text.toString("utf8", off, end), { add_special_tokens: false }).length;
  off = end;
}
const encS = (performance.now() - t0) / 1000;
console.log(`node (transformers.js) load ${loadS.toFixed(2)} s  encode ${(total / 1e6).toFixed(1)} MB in ${encS.toFixed(2)} s = ` +
  `${(total / 1e6 / encS).toFixed(1)} MB/s (${(ntok / 1e6 / encS).toFixed(2)} M tokens/s, ${(total / ntok).toFixed(2)} bytes/token)`);
