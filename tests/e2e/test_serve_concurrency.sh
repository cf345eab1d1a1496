#!/bin/sh
# Concurrency and robustness of `deepseek serve`: 8 streaming clients at once get exactly the
# tokens each gets alone (greedy, logprobs bit for bit); killed clients free their slots at
# once; 200 malformed or hostile requests leave the server serving. Needs only node (fetch).
NAME=serve_concurrency
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
command -v node >/dev/null 2>&1 || { echo "FAIL: node not found (scripts/install-deps.sh --test)"; exit 1; }
serve_model "$TMP/m"
serve_start "$TMP/m" --parallel 4 --ctx 4096 --max-body 65536 --queue 32
node "$HERE/serve_concurrency.mjs" "http://127.0.0.1:$PORT" >"$TMP/out" 2>&1 || fail "concurrency: $(cat "$TMP/out")"
node "$HERE/serve_hostile.mjs" "http://127.0.0.1:$PORT" 65536 >"$TMP/out" 2>&1 || fail "hostile requests: $(cat "$TMP/out")"
kill -0 "$SRV_PID" 2>/dev/null || fail "the server died: $(tail -5 "$TMP/serve.log")"
serve_stop
[ "$fails" -eq 0 ] && echo "e2e serve concurrency: all passed"
exit "$fails"
