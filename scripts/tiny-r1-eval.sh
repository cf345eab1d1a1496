#!/bin/sh
# Held-out evaluation of models/tiny-r1-sft and models/tiny-r1 (the last stage of make tiny-r1):
# problems of the eval split only (never trained on: the hash rule of deepseek tasks), per
# difficulty, K samples each at R1's evaluation settings (temperature 0.6, top-p 0.95).
# The GRPO model is scored with --baseline on the SFT model's per-problem results, which adds
# the paired difference of pass@1 and its 95% interval. Results: $WORK/eval-*.json (one JSON
# line each) and $WORK/eval-*.per.jsonl (per problem).
set -eu
DS=${DS:-build/deepseek}
WORK=${WORK:-build/tiny-r1}
MODELS=${MODELS:-models}
THREADS=${THREADS:-2}
N=${EVAL_N:-150}
K=${EVAL_K:-4}
mkdir -p "$WORK"
A=$WORK/eval-arith.jsonl C=$WORK/eval-countdown.jsonl
: >"$A"
i=0
for d in add:3 add:4 add:5 sub:3 sub:4 sub:5 mul:3x1 mul:4x1 mul:5x1; do
  i=$((i + 1))
  "$DS" tasks --task arithmetic --difficulty "$d" --n "$N" --seed $((100 + i)) --split eval -o "$WORK/eval-part.jsonl" 2>/dev/null
  cat "$WORK/eval-part.jsonl" >>"$A"
done
: >"$C"
for d in n:3 n:4; do
  i=$((i + 1))
  "$DS" tasks --task countdown --difficulty "$d" --n "$N" --seed $((100 + i)) --split eval -o "$WORK/eval-part.jsonl" 2>/dev/null
  cat "$WORK/eval-part.jsonl" >>"$C"
done
rm -f "$WORK/eval-part.jsonl"
for set in arith countdown; do
  data=$WORK/eval-$set.jsonl
  "$DS" eval -m "$MODELS/tiny-r1-sft" --data "$data" --samples "$K" --max-new 400 --seed 7 -t "$THREADS" \
    --out "$WORK/eval-$set-sft.per.jsonl" >"$WORK/eval-$set-sft.json"
  "$DS" eval -m "$MODELS/tiny-r1" --data "$data" --samples "$K" --max-new 400 --seed 7 -t "$THREADS" \
    --out "$WORK/eval-$set-grpo.per.jsonl" --baseline "$WORK/eval-$set-sft.per.jsonl" >"$WORK/eval-$set-grpo.json"
  echo "== $set, SFT:  $(cat "$WORK/eval-$set-sft.json")"
  echo "== $set, GRPO: $(cat "$WORK/eval-$set-grpo.json")"
done
