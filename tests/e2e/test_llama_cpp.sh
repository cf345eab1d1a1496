#!/bin/sh
# Cross-check with llama.cpp (node-llama-cpp 3.21.1 = llama.cpp v0.4.0, its prebuilt CPU binary
# from the npm registry, installed into DS_CACHE): models we write as f32 GGUF must give the
# same greedy tokens in llama.cpp as in our engine — V3 routing with the correction bias and
# group limit, the q_proj variant, and V2-Lite softmax routing with mscale 0.707 — and the
# file's tokenizer must tokenize alike.
NAME=llama_cpp
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
LL=$(bash "$HERE/../../bench/llama_cpp_setup.sh" "${DS_CACHE:-build/cache}") || { echo "FAIL: installing node-llama-cpp"; exit 1; }
MJS="$HERE/../../bench/llama_cpp.mjs"

for spec in "tiny --random-bias" tiny-noq tiny-v2-greedy; do
  # shellcheck disable=SC2086  # spec is a preset and flags
  set -- $spec
  m=$TMP/$1
  "$DS" init --preset "$@" --byte-tokenizer -o "$m" --seed 9 2>/dev/null || { fail "init $spec"; continue; }
  "$DS" convert -m "$m" --to gguf --type f32 -o "$m.gguf" 2>/dev/null || { fail "convert $spec"; continue; }
  for ids in 256,72,101,108,108,111 256,0,17,42,200,255,3,3,3; do
    ours=$("$DS" generate -m "$m.gguf" --ids "$ids" -n 24 --ignore-eos 2>/dev/null | tr ' ' ',')
    theirs=$(node "$MJS" --modules "$LL" greedy --model "$m.gguf" --ids "$ids" --n 24 --threads 1 2>"$TMP/ll.err") ||
      { fail "llama.cpp on $spec: $(tail -1 "$TMP/ll.err")"; continue; }
    [ -n "$ours" ] && [ "$ours" = "$theirs" ] || fail "$spec, prompt $ids: ours $ours, llama.cpp $theirs"
  done
done

[ $fails -eq 0 ] && echo "llama.cpp e2e: all passed"
exit $((fails > 0))
