#!/bin/sh
# End-to-end: the R1 recipe's commands on a tiny model in well under a minute:
# tasks -> tokenizer-train -> init -> sft (loss on the reply only) -> grpo -> eval, plot.
# A short GRPO run (fixed step count, not a timing check) must raise the mean reward on a
# trivially learnable task (every answer is 7); eval's JSON summary has the documented keys;
# bad flags and inputs give one error line.
NAME=rl
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

# one-digit additions: small enough for the tiny preset to learn the trace format in 100 steps
"$DS" tasks --task arithmetic --difficulty add:1 --n 80 --seed 1 --traces -o "$TMP/sft.jsonl" 2>/dev/null || fail "tasks"
"$DS" tokenizer-train --data "$TMP/sft.jsonl" --vocab 300 -o "$TMP/tok" 2>/dev/null || fail "tokenizer-train"
"$DS" init --preset tiny --tokenizer "$TMP/tok" --seed 1 -o "$TMP/init" 2>/dev/null || fail "init"

# SFT: the loss falls, the model is written with its tokenizer, metrics per step
"$DS" sft -m "$TMP/init" --data "$TMP/sft.jsonl" -o "$TMP/sft" --steps 100 --batch 32 --lr 3e-3 --val-every 50 \
  2>"$TMP/sft.log" || fail "sft: $(tail -n 3 "$TMP/sft.log")"
[ -f "$TMP/sft/config.json" ] && [ -f "$TMP/sft/tokenizer.json" ] || fail "sft wrote no model"
[ "$(wc -l <"$TMP/sft/metrics.jsonl")" -eq 100 ] || fail "sft metrics: $(wc -l <"$TMP/sft/metrics.jsonl") lines"
first=$(head -n 1 "$TMP/sft/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(tail -n 1 "$TMP/sft/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f / 3) }' || fail "sft loss $first -> $last did not fall"
grep -q '"val_loss"' "$TMP/sft/metrics.jsonl" || fail "no validation loss"

# GRPO on problems whose answer is always 7 (the SFT model gets ~20% of them at temperature 1):
# the reward must rise over 20 steps
: >"$TMP/seven.jsonl"
for a in 0 1 2 3 4 5 6 7; do
  echo "{\"task\":\"arithmetic\",\"prompt\":\"What is $a + $((7 - a))?\",\"answer\":\"7\"}" >>"$TMP/seven.jsonl"
done
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo" --steps 20 --group 8 --prompts-per-step 8 \
  --max-new 64 --lr 1e-3 --beta 0.04 --seed 1 2>"$TMP/grpo.log" || fail "grpo: $(tail -n 3 "$TMP/grpo.log")"
M=$TMP/grpo/metrics.jsonl
[ "$(wc -l <"$M")" -eq 20 ] || fail "grpo metrics: $(wc -l <"$M") lines"
for key in reward accuracy format_rate kl clip_fraction response_length entropy tok_s; do
  grep -q "\"$key\": " "$M" || fail "grpo metrics lack $key"
done
r0=$(head -n 1 "$M" | sed 's/.*"reward": \([-0-9.]*\).*/\1/' | awk '{ s += $1 } END { print s / NR }')
r1=$(tail -n 5 "$M" | sed 's/.*"reward": \([-0-9.]*\).*/\1/' | awk '{ s += $1 } END { print s / NR }')
awk -v a="$r0" -v b="$r1" 'BEGIN { exit !(b > a + 0.3) }' || fail "grpo mean reward $r0 (step 1) -> $r1 (last 5)"
# --filter-groups: the update uses exactly the groups whose rewards differ
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-f" --steps 3 --group 8 --prompts-per-step 8 \
  --max-new 64 --lr 1e-3 --seed 2 --filter-groups 2>"$TMP/grpo-f.log" || fail "grpo --filter-groups: $(tail -n 3 "$TMP/grpo-f.log")"
bad=$(sed 's/.*"zero_adv_groups": \([0-9]*\), "update_groups": \([0-9]*\).*/\1 \2/' "$TMP/grpo-f/metrics.jsonl" |
  awk '$1 + $2 != 8 { n++ } END { print n + 0 }')
[ "$bad" -eq 0 ] && [ "$(wc -l <"$TMP/grpo-f/metrics.jsonl")" -eq 3 ] || fail "grpo --filter-groups: $(cat "$TMP/grpo-f/metrics.jsonl")"
grep -q '"update_groups": 8' "$M" || fail "grpo without the filter must update on all 8 groups"
# --sft-data (the PPO-ptx anchor): its cross-entropy is logged every step and the term trains:
# traces of 2-digit additions, which the SFT model never saw, get likelier within 6 steps
"$DS" tasks --task arithmetic --difficulty add:2 --n 64 --seed 5 --traces -o "$TMP/anchor.jsonl" 2>/dev/null ||
  fail "tasks (anchor data)"
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-a" --steps 6 --group 4 --prompts-per-step 4 \
  --max-new 128 --lr 1e-3 --seed 3 --sft-data "$TMP/anchor.jsonl" --sft-coef 10 --sft-batch 8 2>"$TMP/grpo-a.log" ||
  fail "grpo --sft-data: $(tail -n 3 "$TMP/grpo-a.log")"
[ "$(grep -c '"sft_ce": ' "$TMP/grpo-a/metrics.jsonl")" -eq 6 ] || fail "grpo --sft-data: sft_ce not on every step"
c0=$(head -n 1 "$TMP/grpo-a/metrics.jsonl" | sed 's/.*"sft_ce": \([0-9.]*\).*/\1/')
c1=$(tail -n 1 "$TMP/grpo-a/metrics.jsonl" | sed 's/.*"sft_ce": \([0-9.]*\).*/\1/')
awk -v a="$c0" -v b="$c1" 'BEGIN { exit !(b < 0.8 * a) }' || fail "grpo --sft-data: anchor CE $c0 -> $c1 did not fall"
grep -q '"sft_ce"' "$M" && fail "grpo without --sft-data logs sft_ce"
# --sft-confident: only the targets the reference is sure of are anchored (a fraction in (0, 1))
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-c" --steps 2 --group 4 --prompts-per-step 4 \
  --max-new 128 --seed 3 --beta 0 --sft-data "$TMP/anchor.jsonl" --sft-batch 8 --sft-confident 0.9 \
  2>"$TMP/grpo-c.log" || fail "grpo --sft-confident: $(tail -n 3 "$TMP/grpo-c.log")"
f=$(head -n 1 "$TMP/grpo-c/metrics.jsonl" | sed 's/.*"sft_anchored": \([0-9.]*\).*/\1/')
awk -v f="$f" 'BEGIN { exit !(f > 0.05 && f < 0.95) }' || fail "grpo --sft-confident: anchored fraction '$f'"
grep -q '"sft_anchored": 1.0000' "$TMP/grpo-a/metrics.jsonl" || fail "grpo --sft-data: without --sft-confident all targets are anchored"
# --top-entropy: the policy term on the top fraction of the update's tokens by sampling entropy
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-e" --steps 2 --group 4 --prompts-per-step 4 \
  --max-new 64 --seed 3 --top-entropy 0.3 2>"$TMP/grpo-e.log" || fail "grpo --top-entropy: $(tail -n 3 "$TMP/grpo-e.log")"
f=$(head -n 1 "$TMP/grpo-e/metrics.jsonl" | sed 's/.*"pg_tokens": \([0-9.]*\).*/\1/')
awk -v f="$f" 'BEGIN { exit !(f >= 0.3 && f < 0.9) }' || fail "grpo --top-entropy 0.3: policy-term fraction '$f'"
grep -q '"pg_tokens"' "$M" && fail "grpo without --top-entropy logs pg_tokens"
# --process-reward: a problem without a step checker (arithmetic) keeps the outcome advantage on
# every token, so the run is the plain one, step for step (the labels and their effect on
# countdown replies are unit-tested in test_reward / test_grpo)
for v in plain proc; do
  extra=""; [ "$v" = proc ] && extra="--process-reward 1"
  "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-$v" --steps 3 --group 4 --prompts-per-step 4 \
    --max-new 64 --lr 1e-3 --seed 5 $extra 2>"$TMP/grpo-$v.log" || fail "grpo $extra: $(tail -n 3 "$TMP/grpo-$v.log")"
  sed 's/, "sample_tok_s.*//' "$TMP/grpo-$v/metrics.jsonl" >"$TMP/grpo-$v.cmp"
done
cmp -s "$TMP/grpo-plain.cmp" "$TMP/grpo-proc.cmp" || fail "grpo --process-reward on arithmetic differs from plain GRPO"
[ "$(grep -c '"proc_free": 1.0000, "proc_checked": 0.0000' "$TMP/grpo-proc/metrics.jsonl")" -eq 3 ] ||
  fail "grpo --process-reward on arithmetic: $(head -n 1 "$TMP/grpo-proc/metrics.jsonl")"
grep -q '"proc_free"' "$TMP/grpo-plain/metrics.jsonl" && fail "grpo without --process-reward logs proc_free"
# countdown replies the checker cannot follow (the shipped model writes search traces, not the
# guess traces it checks) keep the outcome advantage too, rather than losing the policy term
"$DS" tasks --task countdown --n 2 --seed 3 -o "$TMP/cd2.jsonl" 2>/dev/null || fail "tasks countdown"
"$DS" grpo -m "$HERE/../../models/tiny-r1" --tasks "$TMP/cd2.jsonl" -o "$TMP/grpo-cd" --steps 1 --group 4 --prompts-per-step 2 \
  --max-new 48 --process-reward 1 2>"$TMP/grpo-cd.log" || fail "grpo --process-reward countdown: $(tail -n 3 "$TMP/grpo-cd.log")"
grep -q '"proc_free": 1.0000, "proc_checked": 0.0000, "proc_bad": 0.00000, "proc_unchecked": 8' "$TMP/grpo-cd/metrics.jsonl" ||
  fail "grpo --process-reward on search traces: $(cat "$TMP/grpo-cd/metrics.jsonl")"
# --positive-only (the failures' tokens are not pushed down) still learns the sevens
"$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/grpo-p" --steps 20 --group 8 --prompts-per-step 8 \
  --max-new 64 --lr 1e-3 --beta 0.04 --seed 1 --positive-only 2>"$TMP/grpo-p.log" ||
  fail "grpo --positive-only: $(tail -n 3 "$TMP/grpo-p.log")"
p0=$(head -n 1 "$TMP/grpo-p/metrics.jsonl" | sed 's/.*"reward": \([-0-9.]*\).*/\1/')
p1=$(tail -n 5 "$TMP/grpo-p/metrics.jsonl" | sed 's/.*"reward": \([-0-9.]*\).*/\1/' | awk '{ s += $1 } END { print s / NR }')
awk -v a="$p0" -v b="$p1" 'BEGIN { exit !(b > a + 0.3) }' || fail "grpo --positive-only: mean reward $p0 -> $p1"
"$DS" plot --metrics "$M" -o "$TMP/grpo.png" 2>/dev/null || fail "plot of grpo metrics"
[ "$(head -c 4 "$TMP/grpo.png" | tail -c 3)" = "PNG" ] || fail "plot wrote no PNG"

# eval: one JSON line with the documented keys; per-problem results with --out
"$DS" eval -m "$TMP/grpo" --data "$TMP/seven.jsonl" --samples 4 --max-new 64 --out "$TMP/per.jsonl" \
  >"$TMP/eval.json" 2>"$TMP/eval.log" || fail "eval: $(tail -n 2 "$TMP/eval.log")"
for key in '"n": 8' '"samples": 4' '"pass@1": ' '"majority": ' '"format_rate": ' '"mean_response_tokens": '; do
  grep -q -- "$key" "$TMP/eval.json" || fail "eval summary lacks $key: $(cat "$TMP/eval.json")"
done
[ "$(wc -l <"$TMP/per.jsonl")" -eq 8 ] || fail "eval --out: $(wc -l <"$TMP/per.jsonl") lines"
awk -v p="$(sed 's/.*"pass@1": \([0-9.]*\).*/\1/' "$TMP/eval.json")" -v r="$r1" 'BEGIN { exit !(p > 0.5) }' ||
  fail "eval pass@1 after GRPO on the sevens: $(cat "$TMP/eval.json")"
# --baseline: the paired difference to the same model's own results (same seed) is exactly 0
"$DS" eval -m "$TMP/grpo" --data "$TMP/seven.jsonl" --samples 4 --max-new 64 --baseline "$TMP/per.jsonl" \
  >"$TMP/delta.json" 2>/dev/null || fail "eval --baseline"
grep -q '"delta_pass@1": 0.0000, "delta_ci95": 0.0000' "$TMP/delta.json" || fail "eval --baseline: $(cat "$TMP/delta.json")"
head -n 3 "$TMP/per.jsonl" >"$TMP/short.jsonl"
expect 2 "no result for problem 3" "$DS" eval -m "$TMP/grpo" --data "$TMP/seven.jsonl" --baseline "$TMP/short.jsonl"
# greedy eval is reproducible
"$DS" eval -m "$TMP/grpo" --data "$TMP/seven.jsonl" --samples 2 --temp 0 --max-new 64 >"$TMP/g1.json" 2>/dev/null
"$DS" eval -m "$TMP/grpo" --data "$TMP/seven.jsonl" --samples 2 --temp 0 --max-new 64 >"$TMP/g2.json" 2>/dev/null
[ "$(sed 's/"tokens_per_s.*//' "$TMP/g1.json")" = "$(sed 's/"tokens_per_s.*//' "$TMP/g2.json")" ] || fail "greedy eval differs"

# bad input
expect 1 "--data" "$DS" sft -m "$TMP/init" -o "$TMP/x"
expect 1 "unknown option" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --bogus 1
expect 1 "need --sft-data" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --sft-coef 1
expect 1 "need --sft-data" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --sft-confident 0.5
expect 1 "exceeds --micro-batch" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --sft-data "$TMP/anchor.jsonl" --sft-batch 64
expect 1 "--top-entropy" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --top-entropy 0
expect 1 "--top-entropy" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --top-entropy 1.5
expect 1 "--process-reward and --top-entropy" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" \
  --process-reward 1 --top-entropy 0.5
expect 1 "--loss" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --loss nope
expect 1 "--samples" "$DS" eval -m "$TMP/sft" --data "$TMP/seven.jsonl" --samples 0
echo '{"messages": [{"role": "user", "content": "hi"}]}' >"$TMP/bad.jsonl"
expect 2 "bad.jsonl:1" "$DS" sft -m "$TMP/init" --data "$TMP/bad.jsonl" -o "$TMP/x"
expect 2 "bad.jsonl:1" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --max-new 64 --sft-data "$TMP/bad.jsonl"
echo '{"task": "arithmetic", "prompt": "What is 1 + 1?"}' >"$TMP/bad2.jsonl"
expect 2 "bad2.jsonl:1" "$DS" eval -m "$TMP/sft" --data "$TMP/bad2.jsonl"
expect 2 "bad2.jsonl:1" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/bad2.jsonl" -o "$TMP/x"
expect 3 "missing.jsonl" "$DS" eval -m "$TMP/sft" --data "$TMP/missing.jsonl"
# a prompt too long for the model's positions is refused up front
expect 1 "max-new" "$DS" grpo -m "$TMP/sft" --tasks "$TMP/seven.jsonl" -o "$TMP/x" --max-new 100000

[ "$fails" -eq 0 ] && echo "e2e rl: ok"
exit "$fails"
