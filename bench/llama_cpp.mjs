#!/usr/bin/env node
// llama.cpp (v0.4.0, via node-llama-cpp 3.21.1, CPU only) reference runner for GGUF models.
//
//   node bench/llama_cpp.mjs --modules DIR bench  --model F.gguf [--threads T] [--pp 512] [--tg 128] [--runs 3]
//   node bench/llama_cpp.mjs --modules DIR greedy --model F.gguf --ids 0,17,42 [--n 16] [--threads 1]
//   node bench/llama_cpp.mjs --modules DIR logits --model F.gguf --ids 0,17,42 [--threads 1]
//
// DIR is what bench/llama_cpp_setup.sh printed (the folder holding node_modules/node-llama-cpp).
// Results go to stdout (bench: one JSON line; greedy: ids comma-separated; logits: one JSON line),
// everything else to stderr.
//
// Token ids are fed directly to LlamaContextSequence (no tokenizer, no BOS added).
// Sampling: node-llama-cpp's defaults are temperature 0, no repeat/DRY penalty, no token bias, no
// grammar; with temperature <= 0 its native sampler chain (llama/addon/AddonSampler.cpp) is just
// llama_sampler_init_greedy(), i.e. argmax over the full vocabulary's logits (lowest id wins ties).
// greedy/logits run with an F32 KV cache and no flash attention (see newContext) so an f32 GGUF can
// be compared with an f32 engine; bench uses llama-bench's defaults (F16 KV cache, flash attn auto).
import {createRequire} from "node:module";
import {pathToFileURL} from "node:url";
import path from "node:path";
import fs from "node:fs";

function die(msg) {
    process.stderr.write(`llama_cpp.mjs: ${String(msg).split("\n")[0]}\n`);
    process.exit(1);
}
const log = (msg) => process.stderr.write(msg + "\n");

// ---- arguments ----
const USAGE = "usage: llama_cpp.mjs --modules DIR (bench|greedy|logits) --model FILE.gguf [options]";
const MODE_OPTS = {
    bench: ["model", "threads", "pp", "tg", "runs"],
    greedy: ["model", "threads", "ids", "n"],
    logits: ["model", "threads", "ids"],
};
const opts = {};
let mode = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
        const key = a.slice(2);
        if (i + 1 >= argv.length) die(`${a} needs a value; ${USAGE}`);
        if (key in opts) die(`${a} given twice`);
        opts[key] = argv[++i];
    } else if (mode == null) {
        mode = a;
    } else die(`unexpected argument '${a}'; ${USAGE}`);
}
if (!(mode in MODE_OPTS)) die(mode == null ? USAGE : `unknown mode '${mode}'; ${USAGE}`);
for (const key of Object.keys(opts))
    if (key !== "modules" && !MODE_OPTS[mode].includes(key)) die(`option --${key} is not valid for ${mode}`);
for (const key of ["modules", "model", ...(mode === "bench" ? [] : ["ids"])])
    if (opts[key] == null) die(`--${key} is required for ${mode}`);
function posInt(key, dflt) {
    const v = opts[key] ?? String(dflt);
    if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > 1e7) die(`--${key} must be a positive integer, got '${v}'`);
    return Number(v);
}
const threads = posInt("threads", 1);
let ids = null;
if (opts.ids != null) {
    if (!/^[0-9]+(,[0-9]+)*$/.test(opts.ids)) die(`--ids must be comma-separated token ids, got '${opts.ids}'`);
    ids = opts.ids.split(",").map(Number);
}
if (!fs.existsSync(opts.model) || !fs.statSync(opts.model).isFile()) die(`model file not found: ${opts.model}`);

// ---- load node-llama-cpp from DIR ----
let nlc, nlcVersion;
try {
    const req = createRequire(path.join(path.resolve(opts.modules), "package.json"));
    const entry = req.resolve("node-llama-cpp");   // .../node_modules/node-llama-cpp/dist/index.js
    nlcVersion = JSON.parse(fs.readFileSync(path.join(path.dirname(entry), "..", "package.json"), "utf8")).version;
    nlc = await import(pathToFileURL(entry).href);
} catch (e) {
    die(`cannot load node-llama-cpp from ${opts.modules}: ${e.message}`);
}
const {getLlama, LlamaLogLevel} = nlc;

// llama.cpp's log goes to stderr, but is held back while the model loads so that a failed load ends
// with exactly one line carrying llama.cpp's reason.
let loadLog = [];   // [level, message] while loading, then null
const llamaLog = (level, message) => {
    if (loadLog) loadLog.push([level, message.trimEnd()]);
    else process.stderr.write(`[llama.cpp ${level}] ${message.trimEnd()}\n`);
};
let llama, model;
try {
    // gpu:false = CPU backend only; build:"never" = prebuilt binary or fail (never compile or download).
    // maxThreads caps node-llama-cpp's thread splitter; the context's `threads` then sets n_threads
    // and n_threads_batch (llama_set_n_threads) for both prompt processing and generation.
    llama = await getLlama({
        gpu: false, build: "never", skipDownload: true, progressLogs: false, maxThreads: threads,
        logLevel: LlamaLogLevel.warn,
        logger: llamaLog,
    });
    model = await llama.loadModel({modelPath: path.resolve(opts.model), gpuLayers: 0});
} catch (e) {
    const errs = loadLog.filter(([level]) => level === LlamaLogLevel.error).map(([, m]) => m);
    const why = errs.find((m) => m.includes("error loading model")) ?? errs.at(-1);
    die(`failed to load ${opts.model}: ${e.message}${why ? ` (${why})` : ""}`);
}
for (const [level, m] of loadLog) process.stderr.write(`[llama.cpp ${level}] ${m}\n`);
loadLog = null;
// e.g. "v0.4.0 (node-llama-cpp 3.21.1)"; the release is the one the loaded binary was built from
const VERSION = `${llama.llamaCppRelease.release} (node-llama-cpp ${nlcVersion})`;
log(`llama.cpp ${VERSION}, ${llama.buildType} binary, CPU threads=${threads}`);
const nVocab = model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
if (ids != null && nVocab > 0 && ids.some((t) => t >= nVocab)) die(`--ids: token id out of range (n_vocab = ${nVocab})`);

// A fresh context (empty KV cache) with room for `tokens` tokens that can take `batch` in one decode
// (node-llama-cpp sets n_ubatch = n_batch = batch). exact=false: llama-bench's defaults (F16 KV cache,
// flash attention "auto", which llama.cpp turns on for deepseek2 on CPU). exact=true: F32 KV cache and
// no flash attention, the plain f32 path, for comparing tokens/logits with another f32 engine.
async function newContext(tokens, batch, exact) {
    return model.createContext({
        contextSize: tokens,
        batchSize: batch,
        threads: {ideal: threads, min: threads},   // min: wait for all T threads rather than run with fewer
        flashAttention: exact ? false : "auto",
        ...(exact ? {experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"} : {}),
    });
}
// Greedy sampling options: these are also node-llama-cpp's defaults, spelled out for clarity.
const GREEDY = {temperature: 0, yieldEogToken: true /* don't stop at EOS */};

const now = () => performance.now() / 1000;
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const round = (x) => Math.round(x * 100) / 100;

try {
    if (mode === "bench") {
        const pp = posInt("pp", 512), tg = posInt("tg", 128), runs = posInt("runs", 3);
        if (nVocab < 2) die("cannot determine the vocabulary size from the GGUF metadata");
        // Fixed, deterministic prompt ids spread over the vocabulary (tokenization is not timed).
        const tok = (i) => (i * 7919 + 11) % nVocab;
        const ppIds = Array.from({length: pp}, (_, i) => tok(i));
        const tgPrompt = [tok(1), tok(2), tok(3), tok(4)];

        // pp: one decode of `pp` tokens in a single batch, logits for the last one (like llama-bench pp).
        async function runPP() {
            const ctx = await newContext(pp + 1, pp, false);
            try {
                const seq = ctx.getSequence();
                const t0 = now();
                // first yield = after the prompt's decode + 1 greedy sample; stop there (no 2nd decode)
                for await (const _ of seq.evaluate(ppIds, GREEDY)) break;
                const dt = now() - t0;
                if (seq.nextTokenIndex !== pp) throw new Error(`pp: evaluated ${seq.nextTokenIndex} tokens, expected ${pp}`);
                if (ctx.currentThreads !== threads) log(`warning: pp used ${ctx.currentThreads} threads`);
                return pp / dt;
            } finally { await ctx.dispose(); }
        }
        // tg: `tg` decode steps of one token each after a short untimed prompt (like llama-bench tg).
        async function runTG(steps) {
            const ctx = await newContext(tgPrompt.length + steps + 1, 512, false);
            try {
                const seq = ctx.getSequence();
                await seq.evaluateWithoutGeneratingNewTokens(tgPrompt.slice(0, -1));
                let n = 0;
                const t0 = now();
                // iteration k decodes one token (the last prompt id, then each generated id) and samples
                // the next; breaking after `steps` yields means exactly `steps` one-token decodes.
                for await (const _ of seq.evaluate(tgPrompt.slice(-1), GREEDY)) if (++n >= steps) break;
                const dt = now() - t0;
                if (seq.nextTokenIndex !== tgPrompt.length - 1 + steps) throw new Error(`tg: context holds ${seq.nextTokenIndex} tokens`);
                if (ctx.currentThreads !== threads) log(`warning: tg used ${ctx.currentThreads} threads`);
                return steps / dt;
            } finally { await ctx.dispose(); }
        }

        log(`bench: ${opts.model} threads=${threads} pp=${pp} tg=${tg} runs=${runs} n_vocab=${nVocab}`);
        await runPP(); await runTG(Math.min(tg, 8));   // warm-up (untimed), like llama-bench
        const ppRuns = [], tgRuns = [];
        for (let r = 0; r < runs; r++) {
            ppRuns.push(await runPP());
            tgRuns.push(await runTG(tg));
            log(`  run ${r + 1}/${runs}: pp ${ppRuns[r].toFixed(2)} tok/s, tg ${tgRuns[r].toFixed(2)} tok/s`);
        }
        process.stdout.write(JSON.stringify({
            engine: "llama.cpp", version: VERSION, model: opts.model, threads, pp, tg,
            pp_tok_s: round(median(ppRuns)), tg_tok_s: round(median(tgRuns)),
            pp_runs: ppRuns.map(round), tg_runs: tgRuns.map(round),
        }) + "\n");
    } else if (mode === "greedy") {
        const n = posInt("n", 16);
        const ctx = await newContext(ids.length + n + 1, Math.max(ids.length, 1), true);
        const seq = ctx.getSequence();
        const out = [];
        for await (const t of seq.evaluate(ids, GREEDY)) { out.push(t); if (out.length >= n) break; }
        process.stdout.write(out.join(",") + "\n");
        await ctx.dispose();
    } else {   // logits
        // The API does not expose raw logits; with probabilities:true and temperature 0 the native side
        // returns softmax over the full, unmodified logits (the greedy sampler only selects). We print
        // log-softmax values, which equal logit - logsumexp(logits): shift-free, so comparable across engines.
        const ctx = await newContext(ids.length + 1, Math.max(ids.length, 1), true);
        const seq = ctx.getSequence();
        const input = ids.map((t, i) => i < ids.length - 1 ? t
            : [t, {generateNext: {token: true, probabilities: true, options: {temperature: 0}}}]);
        const res = await seq.controlledEvaluate(input);
        const next = res[ids.length - 1]?.next;
        if (next?.probabilities == null) throw new Error("no probabilities returned");
        const top = [...next.probabilities.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
        process.stdout.write(JSON.stringify({
            ids, argmax: next.token, n_vocab: next.probabilities.size,
            top5: top.map(([id, p]) => ({id, logprob: Math.log(p)})),
        }) + "\n");
        await ctx.dispose();
    }
} catch (e) {
    die(`${mode} failed: ${e.message}`);
}
await model.dispose();
