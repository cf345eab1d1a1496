#!/bin/sh
# End-to-end: the deepseek CLI on a tiny random model, bad flags and malformed files.
NAME=cli
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
PY=$(command -v python3 || echo /usr/bin/python3)

M=$TMP/tiny
"$DS" init --preset tiny -o "$M" --seed 3 2>/dev/null || fail "init tiny"
[ -f "$M/model.safetensors.index.json" ] || fail "init wrote no index"
[ "$(ls "$M"/model-*-of-*.safetensors | wc -l)" -ge 2 ] || fail "init wrote fewer than 2 shards"
"$DS" info -m "$M" >"$TMP/info" || fail "info"
grep -q "active/token" "$TMP/info" || fail "info lacks parameter counts"
grep -q "cache/token" "$TMP/info" || fail "info lacks cache sizes"

# generate: reproducible for a seed, streaming ids, several prompts in one batch
"$DS" generate -m "$M" --ids 0,17,42 -n 12 --temp 0.9 --top-p 0.9 --seed 5 --ignore-eos >"$TMP/g1" 2>/dev/null || fail "generate"
"$DS" generate -m "$M" --ids 0,17,42 -n 12 --temp 0.9 --top-p 0.9 --seed 5 --ignore-eos -t 1 >"$TMP/g2" 2>/dev/null || fail "generate -t 1"
[ "$(wc -w <"$TMP/g1")" -eq 12 ] || fail "generate printed $(wc -w <"$TMP/g1") ids, expected 12"
cmp -s "$TMP/g1" "$TMP/g2" || fail "same seed, different output across thread counts"
"$DS" generate -m "$M" --ids "0,17,42;5;9,9,9,9" -n 6 --ignore-eos >"$TMP/g3" 2>/dev/null || fail "generate batch"
[ "$(wc -l <"$TMP/g3")" -eq 3 ] || fail "batched generate printed $(wc -l <"$TMP/g3") lines"
"$DS" generate -m "$M" --ids 0,17,42 -n 6 --ignore-eos >"$TMP/alone" 2>/dev/null
[ "$(head -1 "$TMP/g3")" = "$(cat "$TMP/alone")" ] || fail "greedy batch row 0 differs from the prompt alone"

# logits: shapes, chunked == whole, mtp
"$DS" logits -m "$M" --ids 0,17,42,7 -o "$TMP/l.npy" || fail "logits"
"$DS" logits -m "$M" --ids 0,17,42,7 --chunk 1 -o "$TMP/l1.npy" || fail "logits --chunk 1"
"$DS" logits -m "$M" --ids 0,17,42,7 --mtp -o "$TMP/m.npy" || fail "logits --mtp"
head -c 128 "$TMP/l.npy" | grep -q "(4, 256)" || fail "logits shape is not (4, 256)"
head -c 128 "$TMP/m.npy" | grep -q "(3, 256)" || fail "mtp logits shape is not (3, 256)"

# plot: a PNG from a metrics file; malformed lines are named
printf '{"step": 1, "loss": 5.5}\n{"step": 2, "loss": 4.9, "val_loss": 5.1}\n' >"$TMP/m.jsonl"
"$DS" plot --metrics "$TMP/m.jsonl" -o "$TMP/loss.png" 2>/dev/null || fail "plot"
[ "$(head -c 4 "$TMP/loss.png" | tail -c 3)" = "PNG" ] || fail "plot did not write a PNG"
printf '{"step": 1, "loss": 5.5}\nnot json\n' >"$TMP/bad.jsonl"
expect 2 "line 2" "$DS" plot --metrics "$TMP/bad.jsonl" -o "$TMP/bad.png"
[ -e "$TMP/bad.png" ] && fail "plot wrote a PNG for a malformed file"

# bad flags
expect 1 "unknown option" "$DS" generate -m "$M" --ids 1 --bogus
expect 1 "top-p" "$DS" generate -m "$M" --ids 1 --top-p 1.5
expect 1 "temp" "$DS" generate -m "$M" --ids 1 --temp -1
expect 1 "needs a value" "$DS" generate -m "$M" --ids
expect 1 "--ids" "$DS" generate -m "$M" --ids 1,x,3
expect 1 "--ids" "$DS" logits -m "$M" --ids "" -o "$TMP/x.npy"
expect 1 "preset" "$DS" init --preset nope -o "$TMP/nope"
expect 1 "dtype" "$DS" init --preset tiny --dtype f64 -o "$TMP/nope"
expect 1 "unknown command" "$DS" frobnicate
expect 1 "vocabulary" "$DS" generate -m "$M" --ids 0,256 -n 2

expect 3 "config.json" "$DS" info -m "$TMP/nonexistent"
maxpos=$(sed -n 's/.*"max_position_embeddings":[^0-9]*\([0-9]*\).*/\1/p' "$M/config.json")
expect 1 "exceeds max_position_embeddings $maxpos " "$DS" info -m "$M" --ctx 100000000
expect 1 "no MTP layer" "$DS" logits -m "${DS_FIXTURES:-tests/fixtures}/models/tiny-v2" --ids 1,2 --mtp -o "$TMP/x.npy"
expect 1 "at least 2 ids" "$DS" logits -m "$M" --ids 1 --mtp -o "$TMP/x.npy"
expect 4 "max_position_embeddings" "$DS" generate -m "$M" --ids 1 -n 1000

# malformed files: each names the file/tensor/key and exits 2
for case in truncated header_len bad_json offsets overlap dtype size missing unexpected shape_config config_key config_type index_shard; do
  "$PY" "$HERE/corrupt.py" "$M" "$TMP/bad" "$case" || { fail "corrupt.py $case"; continue; }
  case $case in
    truncated|header_len) pat="safetensors" ;;
    bad_json) pat="JSON" ;;
    offsets) pat="offsets" ;;
    overlap) pat="overlap" ;;
    dtype) pat="I64" ;;
    size) pat="shape" ;;
    missing) pat="missing tensor 'model.layers.1.self_attn.kv_b_proj.weight'" ;;
    unexpected) pat="unexpected tensor 'model.layers.0.mystery.weight'" ;;
    shape_config) pat="config.json implies" ;;
    config_key) pat="hidden_size" ;;
    config_type) pat="model_type" ;;
    index_shard) pat="model-99999-of-99999.safetensors" ;;
  esac
  code=2
  [ "$case" = index_shard ] && code=3
  expect $code "$pat" "$DS" logits -m "$TMP/bad" --ids 1,2 -o "$TMP/x.npy"
  [ -e "$TMP/x.npy" ] && fail "$case: wrote an output file"
done

[ "$fails" -eq 0 ] && echo "e2e cli: all passed"
exit "$fails"
