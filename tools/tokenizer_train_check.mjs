// Encodes test texts with the transformers.js port of HF tokenizers (npm @lenml/tokenizers
// 3.7.2) on a tokenizer written by `deepseek tokenizer-train`, so tests/e2e/test_tokenizer_train.sh
// can compare our ids with it. For each text NNN it writes, under OUT:
//   NNN.txt    the text (exact bytes)
//   NNN.ids    encode(text): BOS comes from the TemplateProcessing post-processor
//   NNN.plain  encode(text, add_special_tokens: false)
// and chat.txt / chat.ids: one user message rendered with the chat template and its generation
// prompt, and its ids as a rendered template is tokenized (no BOS added: the text has it).
//
//   node tools/tokenizer_train_check.mjs build/cache/npm TOKENIZER_DIR OUT
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [cache, tokDir, outDir] = process.argv.slice(2);
if (!cache || !tokDir || !outDir) {
  console.error("usage: node tools/tokenizer_train_check.mjs NPM_CACHE TOKENIZER_DIR OUT");
  process.exit(2);
}
const main = path.resolve(cache, "node_modules/@lenml/tokenizers/dist/main.mjs");
const { TokenizerLoader } = await import(pathToFileURL(main).href);
const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8"));
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

// ---- deterministic texts: the model's own kinds of text, then general ones ----

let seed = 20250214;
function rand() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];

function additionTrace(a, b) {
  const steps = [];
  let carry = 0;
  const da = String(a).split("").reverse(), db = String(b).split("").reverse();
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const x = +(da[i] || 0), y = +(db[i] || 0), s = x + y + carry;
    steps.push(`${x} + ${y} + ${carry} = ${s}, write ${s % 10}, carry ${Math.floor(s / 10)}`);
    carry = Math.floor(s / 10);
  }
  return steps.join("\n");
}

const texts = [];
const add = (t) => { if (t.length && !texts.includes(t)) texts.push(t); };
const U = "<｜User｜>", A = "<｜Assistant｜>", BOS = "<｜begin▁of▁sentence｜>", EOS = "<｜end▁of▁sentence｜>";
for (let i = 0; i < 60; i++) {
  const a = int(10 ** (1 + int(5))), b = int(10 ** (1 + int(4))), op = pick(["+", "-", "*"]);
  const r = op === "+" ? a + b : op === "-" ? a - b : a * b;
  add(`What is ${a} ${op} ${b}?`);
  if (op === "+") add(`${U}What is ${a} + ${b}?${A}<think>\n${additionTrace(a, b)}\n</think>\n\nThe answer is ${r}.${EOS}`);
  else add(`${a} ${op} ${b} = ${r}`);
}
for (let i = 0; i < 40; i++) {
  const nums = [1 + int(9), 1 + int(9), pick([25, 50, 75, 100]), 1 + int(20)];
  const target = 100 + int(900);
  add(`Using the numbers [${nums.join(", ")}], create an equation that equals ${target}. ` +
      `You can use basic arithmetic operations (+, -, *, /) and each number can only be used once.`);
  add(`<think>\nLet me try ${nums[2]} * ${nums[0]} = ${nums[2] * nums[0]}.\n${nums[2] * nums[0]} - ${nums[3]} = ` +
      `${nums[2] * nums[0] - nums[3]}, not ${target}.\n</think>\n<answer>(${nums[2]} * ${nums[0]}) - ${nums[3]}</answer>`);
}
[
  "The quick brown fox jumps over the lazy dog.", "Hello, world!", "  two spaces\n\nnew para",
  "It's www.example.com.\nNext line", "I'm sure they'll say we've done it; DON'T, it'S fine.",
  "naïve café résumé coöperate façade jalapeño", "Straße, Größe, Ærø, Łódź", "e\u0301 decomposed vs é composed",
  "你好，世界", "日本語のテキスト", "Привет, мир!", "مرحبا بالعالم", "😀 ok 👍🏽 👨‍👩‍👧‍👦", "١٢٣ ٤٥٦ and １２３ and ①②",
  "def f(x):\n    return x+1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n", "{\"a\": [1, 2.5, -3e10]}",
  "Tabs\tbetween\twords\t", "line one\r\nline two\r\n", "\n\n\n", " ", "x  \n  y", "3.14159 and 2,718 and 1e-9",
  "0123456789", "9876543210 12345678901234567890", "$9.99 + 15% = ?", "x=1;y=2;z=x**y//3%4^5|6&7",
  U, A, "<think>", "</think>", BOS, EOS, `${BOS}${U}hi${A}`, "<think></think>", "<<｜User｜>>", "<｜User", "< think>",
  `${U}What is 2 + 3?${A}<think>\n`, "a<think>b</think>c", " <｜User｜> x ", "\u00a0nbsp\u3000ideographic\u2003em",
].forEach(add);
const words = ["the", "answer", "is", "carry", "write", "number", "equation", "Let", "me", "try", "so", "total",
  "First", "then", "Wait", "check", "again", "sum", "product", "digits"];
while (texts.length < 320) {
  let s = "";
  for (let k = 1 + int(12); k > 0; k--) {
    const r = rand();
    s += r < 0.3 ? String(int(100000)) : r < 0.8 ? pick(words) : pick([",", ".", "?", "!", ":", "=", "+", "-", "*",
      "(", ")", "\n", "\n\n", "'s", "<think>", "</think>", "é", "数"]);
    s += pick([" ", " ", "", "\n"]);
  }
  add(s);
}

// ---- encode ----

fs.mkdirSync(outDir, { recursive: true });
const name = (i) => String(i).padStart(3, "0");
texts.forEach((t, i) => {
  fs.writeFileSync(path.join(outDir, `${name(i)}.txt`), t);
  fs.writeFileSync(path.join(outDir, `${name(i)}.ids`), Array.from(tok.encode(t)).join(" ") + "\n");
  fs.writeFileSync(path.join(outDir, `${name(i)}.plain`),
    Array.from(tok.encode(t, { add_special_tokens: false })).join(" ") + "\n");
});
// The chat template: @lenml/tokenizers 3.7.2 bundles an old @huggingface/jinja that cannot parse
// R1's template (`content.split('</think>')[-1]`), so when it throws, the rendering that
// @huggingface/jinja 0.5.11 gives (tests/fixtures/templates/expected.jsonl) is used instead.
const msgs = [{ role: "user", content: "What is 2 + 3?" }];
let chat = `${BOS}${U}What is 2 + 3?${A}<think>\n`;
try {
  chat = tok.apply_chat_template(msgs, { add_generation_prompt: true, tokenize: false });
} catch (e) {
  console.error(`tokenizer_train_check: transformers.js cannot render the template (${e.message.split("\n")[0]}); ` +
    "using its known rendering");
}
fs.writeFileSync(path.join(outDir, "chat.txt"), chat);
fs.writeFileSync(path.join(outDir, "chat.ids"), Array.from(tok.encode(chat, { add_special_tokens: false })).join(" ") + "\n");
console.log(`${texts.length} texts -> ${outDir}`);
