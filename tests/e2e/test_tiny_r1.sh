# The shipped default model (models/tiny-r1, made by `make tiny-r1`) still solves what the
# README says it solves: greedy decoding on a fixed set of held-out problems (eval split, so
# never trained on) must reach the stated minimum accuracy and format rate. A model, tokenizer,
# template or engine change that breaks the default fails here.
NAME=tiny_r1
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
M=$ROOT/models/tiny-r1
[ -f "$M/config.json" ] || { echo "FAIL: no shipped model in $M"; exit 1; }

# score FILE KEY: the value of "KEY": in the first JSON object of FILE
score() { sed "s/.*\"$2\": \([-0-9.]*\).*/\1/" "$1" | head -n 1; }
# check NAME SET MIN_PASS: greedy pass@1 on SET >= MIN_PASS and every reply well formed
check() {
  "$DS" eval -m "$M" --data "$2" --samples 1 --temp 0 --max-new 400 -t 2 >"$TMP/$1.json" 2>"$TMP/err" ||
    { fail "eval on $1: $(tail -n 1 "$TMP/err")"; return; }
  p=$(score "$TMP/$1.json" 'pass@1') f=$(score "$TMP/$1.json" format_rate)
  echo "$1: pass@1 $p, format $f (minimum $3)"
  awk -v p="$p" -v m="$3" 'BEGIN { exit !(p >= m) }' || fail "$1: greedy pass@1 $p < $3: $(cat "$TMP/$1.json")"
  awk -v f="$f" 'BEGIN { exit !(f >= 0.95) }' || fail "$1: format rate $f < 0.95"
}

"$DS" tasks --task arithmetic --difficulty add:3-4,sub:3-4 --n 60 --seed 901 --split eval -o "$TMP/addsub.jsonl" 2>/dev/null
"$DS" tasks --task arithmetic --difficulty mul:3x1 --n 40 --seed 902 --split eval -o "$TMP/mul.jsonl" 2>/dev/null
check addsub "$TMP/addsub.jsonl" 0.70
check mul "$TMP/mul.jsonl" 0.45

# the main job of make run: the reasoning is streamed and the boxed answer is right
"$DS" run -m "$M" -p "What is 4738 + 2925?" --temp 0 -n 400 >"$TMP/run.out" 2>"$TMP/err" || fail "run: $(tail -n 1 "$TMP/err")"
grep -q 'boxed{7663}' "$TMP/run.out" || fail "run: no \\boxed{7663} in: $(cat "$TMP/run.out")"
grep -q '</think>' "$TMP/run.out" || fail "run: no reasoning in: $(cat "$TMP/run.out")"
[ "$fails" -eq 0 ] || exit 1
echo "PASS"
