#!/bin/sh
# End-to-end: deepseek train / grad on a tiny byte-tokenizer model: a run that learns, its
# checkpoint loading in `deepseek run`-side commands, resume (after --stop-after and after a
# real SIGINT) reproducing the uninterrupted losses and weights bit for bit, the metrics
# file and plot, and bad input (flags, data, damaged checkpoints).
NAME=train
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"

M=$TMP/init
"$DS" init --preset tiny --byte-tokenizer -o "$M" --seed 4 2>/dev/null || fail "init --byte-tokenizer"
grep -q '"vocab_size":[[:space:]]*258' "$M/config.json" || fail "byte tokenizer model has vocab_size != 258"
# A small fixed text: a few documents, so packing crosses document boundaries.
i=0
while [ $i -lt 6 ]; do
  echo "Document $i. DeepSeek-V3 uses multi-head latent attention and a mixture of experts; the" >"$TMP/doc$i.txt"
  echo "auxiliary-loss-free balancing keeps experts busy. Tokens: $i $i $i." >>"$TMP/doc$i.txt"
  i=$((i + 1))
done
printf '{"text": "A JSONL document about training."}\n{"text": "Another one, with \\"quotes\\"."}\n' >"$TMP/docs.jsonl"
DATA="$TMP/doc0.txt,$TMP/doc1.txt,$TMP/doc2.txt,$TMP/doc3.txt,$TMP/doc4.txt,$TMP/doc5.txt"
ARGS="--seq-len 32 --batch-tokens 192 --micro-batch 2 --lr 4e-3 --val-every 4 --val-frac 0.1 --seed 3"

# 1. An uninterrupted run.
"$DS" train -m "$M" --data "$DATA" --data "$TMP/docs.jsonl" -o "$TMP/a" --steps 12 --save-every 5 $ARGS 2>"$TMP/a.log" \
  || fail "train: $(tail -1 "$TMP/a.log")"
[ "$(wc -l <"$TMP/a/metrics.jsonl")" -eq 12 ] || fail "metrics.jsonl has $(wc -l <"$TMP/a/metrics.jsonl") lines, expected 12"
grep -q '"val_loss"' "$TMP/a/metrics.jsonl" || fail "no validation loss in metrics"
for k in step loss lr grad_norm tok_s mfu mtp_loss expert_load_max_over_mean; do
  grep -q "\"$k\"" "$TMP/a/metrics.jsonl" || fail "metrics lack $k"
done
grep -q "MFU" "$TMP/a.log" || fail "progress line lacks MFU"
first=$(head -1 "$TMP/a/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(tail -1 "$TMP/a/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 1.0) }' || fail "loss did not fall: $first -> $last"
for f in config.json model.safetensors.index.json tokenizer.json tokenizer_config.json optimizer.safetensors train_state.json; do
  [ -f "$TMP/a/$f" ] || fail "checkpoint lacks $f"
done
# The checkpoint is an ordinary model folder.
"$DS" info -m "$TMP/a" >/dev/null 2>&1 || fail "info cannot load the trained checkpoint"
"$DS" generate -m "$TMP/a" --ids 256,68,111 -n 4 >/dev/null 2>&1 || fail "generate cannot run the trained checkpoint"
"$DS" plot --metrics "$TMP/a/metrics.jsonl" -o "$TMP/loss.png" 2>/dev/null || fail "plot"
[ -s "$TMP/loss.png" ] || fail "plot wrote no PNG"

# 2. The same run stopped after 5 steps, then resumed: identical losses and weights.
"$DS" train -m "$M" --data "$DATA" --data "$TMP/docs.jsonl" -o "$TMP/b" --steps 12 --save-every 5 $ARGS --stop-after 5 \
  2>/dev/null || fail "train --stop-after"
grep -q '"step":[[:space:]]*5,' "$TMP/b/train_state.json" || fail "stopped run did not save step 5"
"$DS" train --resume -o "$TMP/b" 2>/dev/null || fail "train --resume"
# Timings differ between runs; everything before "tok_s" must not.
sed 's/"tok_s".*//' "$TMP/a/metrics.jsonl" >"$TMP/ma"
sed 's/"tok_s".*//' "$TMP/b/metrics.jsonl" >"$TMP/mb"
cmp -s "$TMP/ma" "$TMP/mb" || fail "resumed losses differ: $(diff "$TMP/ma" "$TMP/mb" | head -3)"
for f in "$TMP"/a/model-*.safetensors "$TMP/a/optimizer.safetensors"; do
  cmp -s "$f" "$TMP/b/$(basename "$f")" || fail "resumed run's $(basename "$f") differs from the uninterrupted one"
done

# 3. A real SIGINT: exit 130 with a loadable checkpoint that resumes.
"$DS" train -m "$M" --data "$DATA" -o "$TMP/c" --steps 100000 $ARGS --save-every 0 2>"$TMP/c.log" &
pid=$!
n=0
while [ $n -lt 200 ] && ! grep -q "step 2/" "$TMP/c.log" 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "interrupted train exited $rc, expected 130"
grep -q "interrupted at step" "$TMP/c.log" || fail "no interruption message"
"$DS" info -m "$TMP/c" >/dev/null 2>&1 || fail "checkpoint after SIGINT does not load"
at=$(sed -n 's/.*"step":[[:space:]]*\([0-9]*\).*/\1/p' "$TMP/c/train_state.json" | head -1)
"$DS" train --resume -o "$TMP/c" --steps $((at + 2)) 2>/dev/null || fail "resume after SIGINT"
[ "$(wc -l <"$TMP/c/metrics.jsonl")" -eq $((at + 2)) ] || fail "metrics after resume: $(wc -l <"$TMP/c/metrics.jsonl") lines, expected $((at + 2))"

# 4. grad: loss line and a gradient file.
"$DS" grad -m "$M" --ids 256,68,111,99,32,68 -o "$TMP/g.safetensors" --mtp-weight 0.3 >"$TMP/g.out" 2>/dev/null || fail "grad"
grep -q '"loss"' "$TMP/g.out" || fail "grad printed no loss"
[ -s "$TMP/g.safetensors" ] || fail "grad wrote nothing"

# 4b. perplexity of the trained model, and the KL cost of Q8_0 on it.
cat "$TMP"/doc*.txt >"$TMP/all.txt"
"$DS" perplexity -m "$TMP/a" --text "$TMP/all.txt" --ctx 32 >"$TMP/ppl" 2>/dev/null || fail "perplexity"
grep -q '"ppl"' "$TMP/ppl" || fail "perplexity printed no ppl: $(cat "$TMP/ppl")"
"$DS" perplexity -m "$TMP/a" --text "$TMP/all.txt" --ctx 32 --quant q8 --kl >"$TMP/pplq" 2>/dev/null || fail "perplexity --quant q8 --kl"
awk -F'"kl": ' 'NF > 1 { split($2, a, ","); exit !(a[1] + 0 < 0.05) } NF <= 1 { exit 1 }' "$TMP/pplq" ||
  fail "Q8_0 KL not small: $(cat "$TMP/pplq")"
expect 1 "give --quant too" "$DS" perplexity -m "$TMP/a" --text "$TMP/all.txt" --kl
expect 3 "nope.txt" "$DS" perplexity -m "$TMP/a" --text "$TMP/nope.txt"
expect 1 "--quant must be" "$DS" perplexity -m "$TMP/a" --text "$TMP/all.txt" --quant q3

# 5. Bad input: one clear line, non-zero exit, nothing half-written.
expect 1 "-m INIT_DIR is required" "$DS" train --data "$DATA" -o "$TMP/x"
expect 1 "--data FILE is required" "$DS" train -m "$M" -o "$TMP/x"
expect 1 "--seq-len expects" "$DS" train -m "$M" --data "$DATA" -o "$TMP/x" --seq-len 1
expect 1 "--schedule must be" "$DS" train -m "$M" --data "$DATA" -o "$TMP/x" --schedule linear
expect 1 "unknown option" "$DS" train -m "$M" --data "$DATA" -o "$TMP/x" --bogus
expect 3 "nope.txt" "$DS" train -m "$M" --data "$TMP/nope.txt" -o "$TMP/x"
expect 1 "max_position_embeddings" "$DS" train -m "$M" --data "$DATA" -o "$TMP/x" --seq-len 100000
expect 1 "too few" "$DS" train -m "$M" --data "$TMP/docs.jsonl" -o "$TMP/x" --seq-len 200
expect 1 "already holds a training run" "$DS" train -m "$M" --data "$DATA" -o "$TMP/a"
expect 1 "only --steps" "$DS" train --resume -o "$TMP/a" --lr 1
expect 1 "at step 12 of 12" "$DS" train --resume -o "$TMP/a"
"$DS" init --preset tiny -o "$TMP/notok" 2>/dev/null
expect 3 "tokenizer" "$DS" train -m "$TMP/notok" --data "$DATA" -o "$TMP/x"
printf '{"text": 5}\n' >"$TMP/bad.jsonl"
expect 2 "bad.jsonl" "$DS" train -m "$M" --data "$TMP/bad.jsonl" -o "$TMP/x"
# A checkpoint whose optimizer file changed after train_state.json was written.
cp -r "$TMP/a" "$TMP/d"
printf 'x' >>"$TMP/d/optimizer.safetensors"
expect 2 "changed after the checkpoint was written" "$DS" train --resume -o "$TMP/d" --steps 20
cp -r "$TMP/a" "$TMP/e"
echo '{"format": "deepseek.c train_state 1", "step": "x"}' >"$TMP/e/train_state.json"
expect 2 "train_state.json" "$DS" train --resume -o "$TMP/e" --steps 20
expect 1 "at least 2 ids" "$DS" grad -m "$M" --ids 5 -o "$TMP/g2.safetensors"
expect 1 "outside the vocabulary" "$DS" grad -m "$M" --ids 5,999 -o "$TMP/g2.safetensors"
"$DS" init --preset tiny-v2 -o "$TMP/nomtp" 2>/dev/null
expect 1 "no MTP layer" "$DS" grad -m "$TMP/nomtp" --ids 5,6,7 -o "$TMP/g2.safetensors" --mtp-weight 0.3

[ $fails -eq 0 ] && echo "train e2e: all passed"
exit $((fails > 0))
