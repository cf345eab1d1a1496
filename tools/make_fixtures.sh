#!/bin/sh
# Regenerate the golden fixtures under tests/fixtures/ used by tests/unit/test_fixtures.c:
#   ids.txt                      the token ids (one comma-separated line)
#   models/<preset>/             random checkpoint written by `deepseek init --seed 1234 --random-bias`
#   logits/<preset>.npy          float32 [T, V] from the independent reference tools/reference.py
#   logits/<preset>.mtp.npy      float32 [T-1, V] MTP-head logits (presets with an MTP layer)
#   grads/<preset>.safetensors   F32 gradients of the training loss (tools/reference.py --grad:
#                                main CE of ids[1..] given ids[..T-2]; no MTP, no balance loss)
#   grads/<preset>.full.safetensors   same plus --mtp-weight 0.3 --balance-alpha 0.01 (presets
#                                with an MTP layer); loss values in the "__metadata__" strings
#
# Usage: tools/make_fixtures.sh [DEEPSEEK_BINARY]      (default build/deepseek)
# Environment:
#   DS_INIT_CMD  command used instead of "$DS init", e.g.
#                DS_INIT_CMD="/usr/bin/python3 tools/make_tiny_checkpoint.py" (same flags)
#   FIXTURES     output root instead of tests/fixtures (to try the script without touching it)
#   PYTHON       interpreter for the reference (default /usr/bin/python3)
# Run from the repository root.
set -eu

DS=${1:-build/deepseek}
PY=${PYTHON:-/usr/bin/python3}
OUT=${FIXTURES:-tests/fixtures}
SEED=1234
# Fixed ids: 0/1 (bos/eos of the tiny presets), the top of the 256-entry vocabulary, repeats
# (identical keys at different positions), and a spread of others.  24 positions: long enough
# for the YaRN-blended frequencies and for chunked prefill (chunks of 5) to be exercised.
IDS=0,1,17,42,255,254,253,128,3,3,3,99,200,7,250,64,65,31,32,33,127,129,2,251
# tiny-fp8 is the tiny preset stored like the official FP8 release (e4m3 + weight_scale_inv).
PRESETS="tiny tiny-noq tiny-v2 tiny-v2-greedy tiny-fp8"
GRAD_PRESETS="tiny tiny-noq tiny-v2 tiny-v2-greedy"
MTP_WEIGHT=0.3
BALANCE_ALPHA=0.01

if [ -n "${DS_INIT_CMD:-}" ]; then
    INIT=$DS_INIT_CMD
elif [ -x "$DS" ]; then
    INIT="$DS init"
else
    echo "make_fixtures.sh: $DS is not an executable (build it, or set DS_INIT_CMD)" >&2
    exit 1
fi
[ -f tools/reference.py ] || { echo "make_fixtures.sh: run from the repository root" >&2; exit 1; }

"$PY" tools/reference.py --selftest >/dev/null

mkdir -p "$OUT/models" "$OUT/logits" "$OUT/grads"
printf '%s\n' "$IDS" > "$OUT/ids.txt"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT INT TERM

summary=""
for p in $PRESETS; do
    case $p in
        tiny-fp8) args="--preset tiny --dtype fp8 --random-bias" ;;
        *) args="--preset $p --dtype f32 --random-bias" ;;
    esac
    dir=$OUT/models/$p
    rm -rf "$dir"
    # shellcheck disable=SC2086  # INIT and args are word lists
    $INIT $args -o "$dir" --seed $SEED >/dev/null
    "$PY" tools/reference.py --model "$dir" --ids "$IDS" --check-absorbed \
        --out "$OUT/logits/$p.npy" 2>"$LOG"
    summary="$summary$(cat "$LOG")
"
    if "$PY" -c 'import json, sys; sys.exit(0 if (json.load(open(sys.argv[1])).get("num_nextn_predict_layers") or 0) > 0 else 1)' \
        "$dir/config.json"; then
        "$PY" tools/reference.py --model "$dir" --ids "$IDS" --mtp --check-absorbed \
            --out "$OUT/logits/$p.mtp.npy" 2>"$LOG"
        summary="$summary$(cat "$LOG")
"
        has_mtp=1
    else
        has_mtp=0
    fi
    case " $GRAD_PRESETS " in
        *" $p "*)
            loss=$("$PY" tools/reference.py --model "$dir" --ids "$IDS" --grad "$OUT/grads/$p.safetensors" 2>"$LOG")
            summary="$summary$(cat "$LOG")
  $loss
"
            if [ $has_mtp = 1 ]; then
                loss=$("$PY" tools/reference.py --model "$dir" --ids "$IDS" --grad "$OUT/grads/$p.full.safetensors" \
                    --mtp-weight $MTP_WEIGHT --balance-alpha $BALANCE_ALPHA 2>"$LOG")
                summary="$summary$(cat "$LOG")
  $loss
"
            fi
            ;;
    esac
done

echo "fixtures in $OUT (ids: $IDS)"
printf '%s' "$summary"
# shellcheck disable=SC2086  # PRESETS is a word list
"$PY" - "$OUT" $PRESETS <<'EOF'
import os, sys
import numpy as np
root = sys.argv[1]
for p in sys.argv[2:]:
    for suffix in ("", ".mtp"):
        f = os.path.join(root, "logits", p + suffix + ".npy")
        if os.path.exists(f):
            a = np.load(f)
            print("  %-28s %-10s max|logit| %.3f  argmax[:6] %s" % (
                os.path.basename(f), "x".join(map(str, a.shape)), abs(a).max(), a.argmax(-1)[:6].tolist()))
# Gradient fixtures: a tensor may be all-zero only if it belongs to a routed expert that no
# token selected (then all three of its matrices are zero), or to the MTP layer when W = 0.
sys.path.insert(0, "tools")
import json, re, struct
from reference import SafetensorsFile
bad = 0
for p in sys.argv[2:]:
    for suffix in ("", ".full"):
        f = os.path.join(root, "grads", p + suffix + ".safetensors")
        if not os.path.exists(f):
            continue
        st = SafetensorsFile(f)
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            meta = json.loads(fh.read(n))["__metadata__"]
        with open(os.path.join(root, "models", p, "config.json")) as fh:
            L = json.load(fh)["num_hidden_layers"]
        zero, experts = [], {}
        for name in st.info:
            z = not st.read(name)[0].any()
            m = re.match(r"model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.", name)
            if m and not (suffix == "" and int(m.group(1)) == L):
                experts.setdefault(m.groups(), set()).add(z)
            elif z and not (suffix == "" and name.startswith("model.layers.%d." % L)):
                zero.append(name)
        mixed = [k for k, v in experts.items() if len(v) > 1]
        unused = sum(1 for v in experts.values() if v == {True})
        if zero or mixed:
            bad += 1
            print("  %s: UNEXPECTED all-zero gradients %s, experts partly zero %s" % (os.path.basename(f), zero, mixed))
        print("  %-28s %3d tensors  loss %.6f (ce %.6f, mtp %.6f, balance %.6f)  unselected experts %d" % (
            os.path.basename(f), len(st.info), float(meta["loss"]), float(meta["ce"]), float(meta["mtp"]),
            float(meta["balance"]), unused))
sys.exit(1 if bad else 0)
EOF
du -sh "$OUT/models" "$OUT/logits" "$OUT/grads" | sed 's/^/  /'
