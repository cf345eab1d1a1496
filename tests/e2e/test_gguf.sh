#!/bin/sh
# End-to-end: HF checkpoint -> GGUF (convert / quantize) -> deepseek -m FILE.gguf. An f32 or
# bf16 GGUF must give exactly the logits of the checkpoint it came from; q8_0 / q4_0 files load
# and run; malformed GGUF files and bad flags get one clear error line.
NAME=gguf
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
FX=${DS_FIXTURES:-tests/fixtures}
IDS=$(cat "$FX/ids.txt")
PY=/usr/bin/python3

same_logits() { # a.npy b.npy tolerance(relative to max |logit|)
  "$PY" -c 'import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and abs(a - b).max() <= float(sys.argv[3]) * abs(b).max() else 1)' "$1" "$2" "$3"
}

for p in tiny tiny-noq tiny-v2-greedy tiny-fp8; do
  "$DS" convert -m "$FX/models/$p" --to gguf --type f32 -o "$TMP/$p.gguf" 2>/dev/null || { fail "convert $p"; continue; }
  "$DS" logits -m "$FX/models/$p" --ids "$IDS" -o "$TMP/st.npy" 2>/dev/null || fail "logits $p"
  "$DS" logits -m "$TMP/$p.gguf" --ids "$IDS" -o "$TMP/gg.npy" 2>/dev/null || { fail "logits $p.gguf"; continue; }
  same_logits "$TMP/gg.npy" "$TMP/st.npy" 1e-6 || fail "$p: f32 GGUF logits differ from the checkpoint's"
done
"$DS" convert -m "$FX/models/tiny" --to gguf --type bf16 -o "$TMP/bf.gguf" 2>/dev/null || fail "convert bf16"
for t in q8_0 q4_0; do
  "$DS" convert -m "$FX/models/tiny" --to gguf --type $t -o "$TMP/$t.gguf" 2>/dev/null || fail "convert $t"
  "$DS" generate -m "$TMP/$t.gguf" --ids 0,17,42 -n 4 --ignore-eos >/dev/null 2>&1 || fail "generate from $t.gguf"
done
"$DS" quantize -m "$FX/models/tiny" --quant q4 -o "$TMP/q.gguf" 2>/dev/null || fail "quantize"
cmp -s "$TMP/q.gguf" "$TMP/q4_0.gguf" || fail "quantize --quant q4 differs from convert --type q4_0"
"$DS" info -m "$TMP/q4_0.gguf" >"$TMP/info" 2>/dev/null || fail "info on a GGUF file"
grep -q "Q4_0" "$TMP/info" || fail "info does not show Q4_0 matrices"

# bad input
expect 1 "--to supports gguf only" "$DS" convert -m "$FX/models/tiny" --to onnx -o "$TMP/x.gguf"
expect 1 "--type must be" "$DS" convert -m "$FX/models/tiny" --to gguf --type q3 -o "$TMP/x.gguf"
expect 1 "must end in .gguf" "$DS" convert -m "$FX/models/tiny" --to gguf -o "$TMP/x.bin"
expect 1 "--quant q8|q4 is required" "$DS" quantize -m "$FX/models/tiny" -o "$TMP/x.gguf"
head -c 1000 "$TMP/tiny.gguf" >"$TMP/trunc.gguf"
expect 2 "trunc.gguf" "$DS" logits -m "$TMP/trunc.gguf" --ids 1,2 -o "$TMP/x.npy"
printf 'GGUF\003\000\000\000' >"$TMP/empty.gguf"
expect 2 "empty.gguf" "$DS" info -m "$TMP/empty.gguf"
printf 'not a gguf at all' >"$TMP/junk.gguf"
expect 2 "junk.gguf" "$DS" info -m "$TMP/junk.gguf"
expect 3 "nope.gguf" "$DS" info -m "$TMP/nope.gguf"
[ ! -e "$TMP/x.gguf" ] || fail "a failed convert left x.gguf behind"

[ $fails -eq 0 ] && echo "gguf e2e: all passed"
exit $((fails > 0))
