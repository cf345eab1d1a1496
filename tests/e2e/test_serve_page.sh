#!/bin/sh
# The chat page of `deepseek serve` in headless Chromium: Debian's chromium (scripts/install-deps.sh
# --test) driven by playwright-core from npm. Keeps the screenshot as build/serve_page.png.
# Skips, with one message, when Chromium or the npm package cannot be had.
NAME=serve_page
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/serve_lib.sh"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "SKIP: chromium is not installed (scripts/install-deps.sh --test installs Debian's)"
  exit 0
fi
MODS=$(serve_npm playwright playwright-core@1.65.1)
if [ -z "$MODS" ]; then
  echo "SKIP: the playwright-core npm package could not be installed (offline?)"
  exit 0
fi
SHOT=$(cd "${DS_CACHE:-build/cache}/.." && pwd)/serve_page.png
serve_model "$TMP/m"
serve_start "$TMP/m" --parallel 2 --ctx 4096
node "$HERE/serve_page.mjs" "$MODS" "http://127.0.0.1:$PORT" "$CHROMIUM" "$SHOT" >"$TMP/out" 2>&1 || fail "page: $(cat "$TMP/out")"
[ -s "$SHOT" ] || fail "no screenshot at $SHOT"
serve_stop
[ "$fails" -eq 0 ] && echo "e2e serve page: all passed (screenshot $SHOT)"
exit "$fails"
