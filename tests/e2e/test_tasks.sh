#!/bin/sh
# End-to-end: deepseek tasks writes verifiable-reward problems (and SFT traces) as JSONL:
# line counts and keys, byte-identical reruns, disjoint splits, bad flags and specs.
NAME=tasks
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

A=$TMP/a.jsonl
"$DS" tasks --task arithmetic --n 200 --seed 3 --difficulty add:1-3,sub:2,mul:2x1 -o "$A" 2>"$TMP/log" || fail "arithmetic: $(cat "$TMP/log")"
grep -q "wrote 200 arithmetic problems" "$TMP/log" || fail "no summary line: $(cat "$TMP/log")"
[ "$(wc -l <"$A")" -eq 200 ] || fail "arithmetic wrote $(wc -l <"$A") lines, expected 200"
for key in '"task":"arithmetic"' '"difficulty":"' '"prompt":"What is ' '"answer":"' '"split":"train"'; do
  [ "$(grep -c -F "$key" "$A")" -eq 200 ] || fail "not every arithmetic line has $key"
done
grep -q '"difficulty":"mul-2x1"' "$A" || fail "no mul-2x1 label"
grep -q '"difficulty":"sub-2"' "$A" || fail "no sub-2 label"
grep -q '"messages"' "$A" && fail "messages without --traces"
grep -q '"prompt":"What is [0-9]* [-+*] [0-9]*?"' "$A" || fail "prompt not in the form 'What is A op B?'"

"$DS" tasks --task arithmetic --n 200 --seed 3 --difficulty add:1-3,sub:2,mul:2x1 -o "$TMP/a2.jsonl" 2>/dev/null
cmp -s "$A" "$TMP/a2.jsonl" || fail "same flags, different bytes"
"$DS" tasks --task arithmetic --n 200 --seed 4 --difficulty add:1-3,sub:2,mul:2x1 -o "$TMP/a3.jsonl" 2>/dev/null
cmp -s "$A" "$TMP/a3.jsonl" && fail "another seed gave the same problems"

# eval split: labelled, and no prompt shared with train
E=$TMP/e.jsonl
"$DS" tasks --task arithmetic --n 50 --seed 3 --difficulty add:1-3,sub:2,mul:2x1 --split eval -o "$E" 2>/dev/null || fail "eval split"
[ "$(grep -c '"split":"eval"' "$E")" -eq 50 ] || fail "eval lines are not all split eval"
grep -o '"prompt":"[^"]*"' "$A" | sort >"$TMP/pa"
grep -o '"prompt":"[^"]*"' "$E" | sort >"$TMP/pe"
[ -z "$(comm -12 "$TMP/pa" "$TMP/pe")" ] || fail "train and eval share problems: $(comm -12 "$TMP/pa" "$TMP/pe" | head -3)"
[ "$(uniq -d "$TMP/pa" | wc -l)" -eq 0 ] || fail "duplicate problems within one file"

# countdown with traces: chat messages for sft
C=$TMP/c.jsonl
"$DS" tasks --task countdown --n 40 --seed 1 --difficulty n:3-4,max:30 --traces -o "$C" 2>/dev/null || fail "countdown --traces"
[ "$(wc -l <"$C")" -eq 40 ] || fail "countdown wrote $(wc -l <"$C") lines"
for key in '"task":"countdown"' '"numbers":[' '"target":' '"prompt":"Using the numbers ' \
  '"messages":[{"role":"user","content":"Using' '{"role":"assistant","content":"<think>\nnumbers ' '\n</think>\n\n\\boxed{'; do
  [ "$(grep -c -F "$key" "$C")" -eq 40 ] || fail "not every countdown line has $key"
done
grep -q '"difficulty":"cd-3"' "$C" && grep -q '"difficulty":"cd-4"' "$C" || fail "countdown labels cd-3 and cd-4 missing"
"$DS" tasks --task countdown --n 40 --seed 1 --difficulty n:3-4,max:30 --traces -o "$TMP/c2.jsonl" 2>/dev/null
cmp -s "$C" "$TMP/c2.jsonl" || fail "countdown traces differ between runs"
# the guess style: same problems, every reply a list of checked guesses ending in one "yes"
G=$TMP/g.jsonl
"$DS" tasks --task countdown --n 40 --seed 1 --difficulty n:3-4,max:30 --traces --cd-trace guess -o "$G" 2>/dev/null ||
  fail "countdown --cd-trace guess"
[ "$(grep -c -F '{"role":"assistant","content":"<think>\ntarget ' "$G")" -eq 40 ] || fail "guess traces lack the target line"
[ "$(grep -c -F ', yes\n</think>\n\n\\boxed{' "$G")" -eq 40 ] || fail "not every guess trace ends in a yes and a box"
cut -d'"' -f1-20 "$C" | cmp -s - "$(cut -d'"' -f1-20 "$G" >"$TMP/g.head"; echo "$TMP/g.head")" ||
  fail "--cd-trace changed the problems, not only the traces"
expect 1 "--cd-trace must be search or guess" "$DS" tasks --task countdown --n 5 --traces --cd-trace dfs -o "$TMP/x.jsonl"
expect 1 "only applies with --traces" "$DS" tasks --task countdown --n 5 --cd-trace guess -o "$TMP/x.jsonl"
"$DS" tasks --task arithmetic --n 5 --traces -o "$TMP/t.jsonl" 2>/dev/null || fail "default difficulty"
grep -q 'carry' "$TMP/t.jsonl" || fail "arithmetic traces lack carry lines"
"$DS" tasks --help | grep -q "mul:AxB" || fail "--help does not document the difficulty syntax"

# errors: one line each
expect 1 "--task is required" "$DS" tasks --n 5 -o "$TMP/x.jsonl"
expect 1 "arithmetic or countdown" "$DS" tasks --task algebra --n 5 -o "$TMP/x.jsonl"
expect 1 "--n is required" "$DS" tasks --task arithmetic -o "$TMP/x.jsonl"
expect 1 "--n must be" "$DS" tasks --task arithmetic --n 0 -o "$TMP/x.jsonl"
expect 1 "--n must be" "$DS" tasks --task arithmetic --n 5x -o "$TMP/x.jsonl"
expect 1 "--n must be" "$DS" tasks --task arithmetic --n 99999999 -o "$TMP/x.jsonl"
expect 1 "--seed" "$DS" tasks --task arithmetic --n 5 --seed -1 -o "$TMP/x.jsonl"
expect 1 "--split" "$DS" tasks --task arithmetic --n 5 --split test -o "$TMP/x.jsonl"
expect 1 "-o FILE is required" "$DS" tasks --task arithmetic --n 5
expect 1 "needs a value" "$DS" tasks --task arithmetic --n
expect 1 "unknown option" "$DS" tasks --task arithmetic --n 5 --bogus -o "$TMP/x.jsonl"
expect 1 "item 'add:0'" "$DS" tasks --task arithmetic --n 5 --difficulty add:0 -o "$TMP/x.jsonl"
expect 1 "item 'mul:3'" "$DS" tasks --task arithmetic --n 5 --difficulty add:1,mul:3 -o "$TMP/x.jsonl"
expect 1 "unknown operation" "$DS" tasks --task arithmetic --n 5 --difficulty pow:2 -o "$TMP/x.jsonl"
expect 1 "empty item" "$DS" tasks --task arithmetic --n 5 --difficulty add:1,,sub:2 -o "$TMP/x.jsonl"
expect 1 "item 'n:9'" "$DS" tasks --task countdown --n 5 --difficulty n:9 -o "$TMP/x.jsonl"
expect 1 "item 'add:2'" "$DS" tasks --task countdown --n 5 --difficulty add:2 -o "$TMP/x.jsonl"
expect 1 "only [0-9]* distinct" "$DS" tasks --task arithmetic --n 100 --difficulty add:1 -o "$TMP/x.jsonl"
[ -e "$TMP/x.jsonl" ] && fail "a failed run wrote its output file"
expect 3 "nodir" "$DS" tasks --task arithmetic --n 5 -o "$TMP/nodir/x.jsonl"
ls "$TMP" | grep -q '\.tmp\.' && fail "a temp file was left behind"

[ "$fails" -eq 0 ] && echo "e2e tasks: all passed"
exit "$fails"
