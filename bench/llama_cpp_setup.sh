#!/usr/bin/env bash
# Install node-llama-cpp 3.21.1 (bundles llama.cpp v0.4.0) with its prebuilt linux-x64 CPU binary.
#
#   bench/llama_cpp_setup.sh CACHE_DIR
#
# Installs into CACHE_DIR/llama-cpp and prints that folder (the parent of node_modules) on stdout;
# pass it to bench/llama_cpp.mjs as --modules. Needs only the npm registry (no GitHub): nothing
# is built from source and no llama.cpp source/binary is downloaded by node-llama-cpp itself.
# Idempotent: does nothing if the right versions are already there.
set -euo pipefail

VER=3.21.1
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
fi
mkdir -p "$1/llama-cpp"
DIR=$(cd "$1/llama-cpp" && pwd)

# version of an installed package, or empty
pkgver() {
    node -e 'try { process.stdout.write(require(process.argv[1]).version) } catch { }' \
        "$DIR/node_modules/$1/package.json"
}

if [ "$(pkgver node-llama-cpp)" != "$VER" ] || [ "$(pkgver @node-llama-cpp/linux-x64)" != "$VER" ]; then
    echo "llama_cpp_setup: installing node-llama-cpp@$VER into $DIR" >&2
    [ -f "$DIR/package.json" ] ||
        echo '{"name": "llama-cpp-bench", "private": true, "type": "module"}' > "$DIR/package.json"
    # node-llama-cpp's postinstall would try to download/build llama.cpp when no prebuilt binary fits;
    # these settings (documented in node-llama-cpp's dist/config.js) and --ignore-scripts turn that off.
    export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_POSTINSTALL=skip
    # --omit=optional skips the ~650 MB of CUDA/Vulkan/arm prebuilt variants that node-llama-cpp lists
    # as optionalDependencies; the CPU one is requested explicitly so it is a regular dependency.
    (cd "$DIR" && npm install -E --ignore-scripts --omit=optional --no-audit --no-fund \
        --loglevel=error "node-llama-cpp@$VER" "@node-llama-cpp/linux-x64@$VER" >&2)
    if [ "$(pkgver node-llama-cpp)" != "$VER" ] || [ "$(pkgver @node-llama-cpp/linux-x64)" != "$VER" ]; then
        echo "llama_cpp_setup: install failed (node-llama-cpp or @node-llama-cpp/linux-x64 != $VER)" >&2
        exit 1
    fi
fi
echo "$DIR"
