#!/bin/sh
# End-to-end: `deepseek serve` driven by the official `openai` npm client (installed into the
# build cache at test time), then a drain on SIGTERM: the running stream completes, new
# requests are refused, the process exits 0.
NAME=serve
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"

MODS=$(serve_npm openai openai@6.49.0)
if [ -z "$MODS" ]; then
  echo "SKIP: the openai npm package could not be installed (offline?)"
  exit 0
fi
serve_model "$TMP/m"

expect 1 "unknown option" "$DS" serve -m "$TMP/m" --bogus
expect 1 "port" "$DS" serve -m "$TMP/m" --port 70000
expect 1 "not a numeric" "$DS" serve -m "$TMP/m" --host localhost.invalid

serve_start "$TMP/m" --parallel 4 --ctx 4096 --api-key sekret --max-body 65536
node "$HERE/serve_openai.mjs" "$MODS" "http://127.0.0.1:$PORT" sekret >"$TMP/out" 2>&1 || fail "openai client: $(cat "$TMP/out")"
# the page and the health check need no key; /v1 does
node -e '
const base = process.argv[1];
const r = await fetch(base + "/");
const html = await r.text();
const h = await (await fetch(base + "/health")).json();
const m = await fetch(base + "/v1/models");
if (r.status !== 200 || !html.includes("<title>") || h.status !== "ok" || m.status !== 401) { console.log("page/health/auth", r.status, h, m.status); process.exit(1); }
' "http://127.0.0.1:$PORT" >"$TMP/out" 2>&1 || fail "page/health: $(cat "$TMP/out")"

# Drain: a long stream is running when SIGTERM arrives; it still completes.
node -e '
const [base] = process.argv.slice(1);
const r = await fetch(base + "/v1/chat/completions", { method: "POST",
  headers: { "Content-Type": "application/json", Authorization: "Bearer sekret" },
  body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], max_tokens: 600, temperature: 0, ignore_eos: true,
                         stream: true, stream_options: { include_usage: true } }) });
let buf = "", first = true;
const dec = new TextDecoder();
for await (const chunk of r.body) {
  buf += dec.decode(chunk, { stream: true });
  if (first) { first = false; console.log("streaming"); }
}
const usage = buf.split("\n").filter((l) => l.includes("\"usage\":{")).map((l) => JSON.parse(l.slice(6)).usage)[0];
console.log(buf.includes("data: [DONE]") && usage && usage.completion_tokens === 600 ? "complete" : "incomplete " + buf.slice(-300));
' "http://127.0.0.1:$PORT" >"$TMP/drain" 2>&1 &
client=$!
for _ in $(seq 1 50); do grep -q streaming "$TMP/drain" && break; sleep 0.1; done
kill -TERM "$SRV_PID"
sleep 0.3
node -e 'fetch(process.argv[1] + "/health").then((r) => console.log("health", r.status), () => console.log("refused"))' \
  "http://127.0.0.1:$PORT" >"$TMP/after" 2>&1
grep -Eq "refused|health 503" "$TMP/after" || fail "new requests while draining: $(cat "$TMP/after")"
wait "$client"
grep -q complete "$TMP/drain" && ! grep -q incomplete "$TMP/drain" || fail "stream during drain: $(cat "$TMP/drain")"
serve_stop signalled

[ "$fails" -eq 0 ] && echo "e2e serve: all passed"
exit "$fails"
