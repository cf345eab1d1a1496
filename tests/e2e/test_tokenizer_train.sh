#!/bin/sh
# End-to-end: deepseek tokenizer-train on a small corpus of the shipped model's kinds of text
# (R1-format arithmetic traces, countdown prompts, prose): same files for the same input, ids
# equal to transformers.js (npm @lenml/tokenizers 3.7.2, tools/tokenizer_train_check.mjs) on
# ~300 texts, the chat template through `deepseek run`, and bad flags, data and output folders.
NAME=tokenizer_train
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
NPM=${DS_CACHE:-build/cache}/npm
V=600

# ---- corpus ----
awk -v n=2500 'BEGIN {
  srand(7)
  for (i = 0; i < n; i++) {
    a = int(rand() * 100000); b = int(rand() * 1000); x = a; y = b; c = 0; t = ""
    do {
      d = x % 10 + y % 10 + c
      t = t sprintf("%d + %d + %d = %d, write %d, carry %d\\n", x % 10, y % 10, c, d, d % 10, int(d / 10))
      c = int(d / 10); x = int(x / 10); y = int(y / 10)
    } while (x || y || c)
    printf "{\"messages\": [{\"role\": \"user\", \"content\": \"What is %d + %d?\"}, {\"role\": \"assistant\", ", a, b
    printf "\"content\": \"<think>\\n%s</think>\\n\\nThe answer is %d.\"}]}\n", t, a + b
    printf "{\"prompt\": \"Using the numbers [%d, %d, 25, %d], create an equation that equals %d.\", \"id\": %d}\n",
      a % 10, b % 10, (a + b) % 20, 100 + a % 900, i
  }
}' >"$TMP/data.jsonl"
cat >"$TMP/prose.txt" <<'EOF'
Addition works column by column from the right: add the two digits and the carry, write the
last digit of the sum and carry the rest. Subtraction borrows from the next column when the
digit on top is smaller. In countdown, combine the numbers with +, -, * and / to reach the
target; each number can be used once. Wait, let me check that again: 25 * 4 = 100, and
100 + 7 = 107. It's fine; they'll see we've done it. naïve café résumé — déjà vu. 你好，世界。
EOF
cat "$ROOT/README.md" >>"$TMP/prose.txt" 2>/dev/null

# ---- training: files, progress, determinism ----
T=$TMP/tok
"$DS" tokenizer-train --data "$TMP/data.jsonl,$TMP/prose.txt" --vocab $V -o "$T" 2>"$TMP/log" || fail "train: $(cat "$TMP/log")"
[ -f "$T/tokenizer.json" ] && [ -f "$T/tokenizer_config.json" ] || fail "train wrote no tokenizer files"
grep -q "merges 50%" "$TMP/log" || fail "no merge progress: $(cat "$TMP/log")"
grep -q "vocabulary $V" "$TMP/log" || fail "no summary: $(cat "$TMP/log")"
"$DS" tokenizer-train --data "$TMP/data.jsonl" --data "$TMP/prose.txt" --vocab $V -o "$TMP/tok2" -q 2>"$TMP/log2" ||
  fail "train again: $(cat "$TMP/log2")"
[ -s "$TMP/log2" ] && fail "-q still printed: $(cat "$TMP/log2")"
for f in tokenizer.json tokenizer_config.json; do cmp -s "$T/$f" "$TMP/tok2/$f" || fail "$f differs between two runs"; done
ls "$T" | grep -q tmp && fail "temporary files left in $T"

# ---- the tokenizer through deepseek tokenize ----
ids=$(printf '<｜User｜>What is 2 + 3?<｜Assistant｜><think>\n' | "$DS" tokenize -m "$T" --no-add-special)
case "$ids" in "$((V - 4)) "*" $((V - 3)) $((V - 2)) 10") ;; *) fail "chat tokens not whole: $ids" ;; esac
[ "$("$DS" tokenize -m "$T" --text 1234567890)" = "$((V - 6)) 49 50 51 52 53 54 55 56 57 48" ] ||
  fail "digits: $("$DS" tokenize -m "$T" --text 1234567890)"
[ "$("$DS" detokenize -m "$T" --ids "$(echo "$ids" | tr ' ' ,)")" = "$(printf '<｜User｜>What is 2 + 3?<｜Assistant｜><think>')" ] ||
  fail "detokenize"

# ---- parity with transformers.js ----
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP parity: node not found (install nodejs: scripts/install-deps.sh --test)"
elif [ ! -f "$NPM/node_modules/@lenml/tokenizers/package.json" ]; then
  echo "SKIP parity: $NPM/node_modules/@lenml/tokenizers missing (run DS_CACHE=<build>/cache sh tests/tokenizer_files.sh)"
elif ! node "$ROOT/tools/tokenizer_train_check.mjs" "$NPM" "$T" "$TMP/chk" >"$TMP/node.log" 2>&1; then
  fail "tokenizer_train_check.mjs: $(cat "$TMP/node.log")"
else
  # Every text without specials; with them (BOS) every 8th, as BOS is all the post-processor adds.
  n=0 bad=0
  for f in "$TMP"/chk/[0-9]*.txt; do
    b=${f%.txt}
    n=$((n + 1))
    plain=$(cat "$b.plain")
    [ "$("$DS" tokenize -m "$T" --no-add-special <"$f")" = "$plain" ] ||
      { bad=$((bad + 1)); echo "ids differ from transformers.js: $(head -c 80 "$f")"; }
    [ "$(cat "$b.ids")" = "$((V - 6))${plain:+ }$plain" ] || { bad=$((bad + 1)); echo "transformers.js adds more than BOS"; }
    [ $((n % 8)) -eq 1 ] && { [ "$("$DS" tokenize -m "$T" <"$f")" = "$(cat "$b.ids")" ] ||
      { bad=$((bad + 1)); echo "ids with BOS differ from transformers.js: $(head -c 80 "$f")"; }; }
  done
  [ "$n" -ge 300 ] || fail "only $n parity texts"
  [ "$bad" -eq 0 ] || fail "$bad encodings differ from transformers.js"
  [ "$("$DS" tokenize -m "$T" --no-add-special <"$TMP/chk/chat.txt")" = "$(cat "$TMP/chk/chat.ids")" ] ||
    fail "rendered chat prompt ids differ from transformers.js"
fi

# ---- the chat template through deepseek run (a tiny random model paired with the tokenizer) ----
M=$TMP/m
"$DS" init --preset tiny --vocab $V --tokenizer "$T" -o "$M" 2>/dev/null || fail "init --tokenizer"
want=$(printf '<｜begin▁of▁sentence｜><｜User｜>What is 2 + 3?<｜Assistant｜><think>\n' | "$DS" tokenize -m "$T" --no-add-special | wc -w)
"$DS" run -m "$M" -p "What is 2 + 3?" -n 1 --temp 0 >/dev/null 2>"$TMP/run.err" || fail "run: $(cat "$TMP/run.err")"
grep -q "prompt $want tokens" "$TMP/run.err" || fail "run did not render the R1 prompt ($want tokens): $(cat "$TMP/run.err")"

# ---- stopping early is a note, not an error ----
printf 'ab ab ab\nab\n' >"$TMP/small.txt"
expect 0 "stopped early at a vocabulary of 264" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 400 -o "$TMP/small"
[ -f "$TMP/small/tokenizer.json" ] || fail "early stop wrote nothing"

# ---- bad flags, data and output folders: one error line, nothing written ----
"$DS" tokenizer-train --help | grep -q "usage: deepseek tokenizer-train" || fail "--help"
printf '{"text": "ok"}\n[1, 2]\n' >"$TMP/bad.jsonl"
: >"$TMP/afile"
expect 1 "unknown option" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 300 -o "$TMP/e" --bogus
expect 1 "--data FILE is required" "$DS" tokenizer-train --vocab 300 -o "$TMP/e"
expect 1 "--vocab N is required" "$DS" tokenizer-train --data "$TMP/small.txt" -o "$TMP/e"
expect 1 "-o DIR is required" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 300
expect 1 "needs a value" "$DS" tokenizer-train --data "$TMP/small.txt" -o "$TMP/e" --vocab
expect 1 "--vocab expects" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab lots -o "$TMP/e"
expect 1 "at least 262" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 100 -o "$TMP/e"
expect 1 "--max-bytes" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 300 --max-bytes 0 -o "$TMP/e"
expect 1 "--min-frequency" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 300 --min-frequency x -o "$TMP/e"
expect 1 "--data expects" "$DS" tokenizer-train --data "$TMP/small.txt,,x" --vocab 300 -o "$TMP/e"
expect 3 "missing.jsonl" "$DS" tokenizer-train --data "$TMP/missing.jsonl" --vocab 300 -o "$TMP/e"
expect 2 "bad.jsonl:2: not a JSON object" "$DS" tokenizer-train --data "$TMP/bad.jsonl" --vocab 300 -o "$TMP/e"
expect 3 "not a folder" "$DS" tokenizer-train --data "$TMP/small.txt" --vocab 300 -o "$TMP/afile/sub"
[ -e "$TMP/e" ] && fail "a failed run created its output folder"

[ "$fails" -eq 0 ] && echo "e2e tokenizer-train: all passed"
exit "$fails"
