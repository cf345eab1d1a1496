# Shared by the e2e scripts (sourced): the binary, a private temp folder removed on exit,
# and the fail / expect helpers. Set NAME before sourcing.
set -u
DS=${DS_BIN:-build/deepseek}
TMP=${DS_TMP:-/tmp/ds-e2e}/$NAME.$$
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect CODE PATTERN cmd...: exit status CODE and PATTERN in stderr. A failure must end
# with exactly one error line ("deepseek ...: message") holding PATTERN; progress lines
# printed before it are allowed.
expect() {
  code=$1 pat=$2
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  [ "$rc" -eq "$code" ] || { fail "'$*' exited $rc, expected $code: $(cat "$TMP/err")"; return; }
  if [ "$code" -eq 0 ]; then
    grep -q -- "$pat" "$TMP/err" || fail "'$*' stderr lacks '$pat': $(cat "$TMP/err")"
    return
  fi
  tail -n 1 "$TMP/err" | grep -q -- "$pat" || fail "'$*' last stderr line lacks '$pat': $(cat "$TMP/err")"
  [ "$(grep -c '^deepseek' "$TMP/err")" -eq 1 ] && tail -n 1 "$TMP/err" | grep -q '^deepseek' ||
    fail "'$*' does not end with exactly one error line: $(cat "$TMP/err")"
}
