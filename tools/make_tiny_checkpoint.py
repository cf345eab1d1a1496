#!/usr/bin/python3
"""Write a random-weight DeepSeek checkpoint in the Hugging Face layout.

Stand-in for `deepseek init` while the C writer is not available, and a second, independent
writer afterwards (the reference must load both).  Only the tiny configurations of section 11
of docs/deepseek-architecture.md are provided:

    tiny            T1: every V3 feature (q LoRA, YaRN, sigmoid + bias group routing, MTP)
    tiny-noq        T1 with q_lora_rank null (q_proj path)
    tiny-v2         T1-v2: softmax scores, group_limited_greedy, 2 shared experts, mscale 0.707
    tiny-v2-greedy  T1-v2 second variant: plain greedy top-K, n_group 1

Output: config.json, model-0000{1,2}-of-00002.safetensors, model.safetensors.index.json.
Tensor names/shapes follow sections 6.2 and 5; dtypes follow section 6.3 for --dtype fp8.

The command line mirrors `deepseek init` so tools/make_fixtures.sh can substitute it:
    /usr/bin/python3 tools/make_tiny_checkpoint.py --preset tiny -o DIR --seed 1234 --dtype f32
"""

import argparse
import json
import math
import os
import struct

import numpy as np

# ----------------------------------------------------------------------------------------------
# Configurations (section 11)
# ----------------------------------------------------------------------------------------------

_T1 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": 256,
    "hidden_size": 32,
    "intermediate_size": 64,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 4,
    "num_nextn_predict_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_shared_experts": 1,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_group": 4,
    "topk_group": 2,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "norm_topk_prob": True,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "q_lora_rank": 16,
    "kv_lora_rank": 16,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8,
    "v_head_dim": 8,
    "hidden_act": "silu",
    "rope_theta": 10000,
    "rope_scaling": {
        "type": "yarn",
        "factor": 4,
        "original_max_position_embeddings": 64,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "torch_dtype": "float32",
}


def preset_config(name):
    c = json.loads(json.dumps(_T1))  # deep copy
    if name == "tiny":
        pass
    elif name == "tiny-noq":
        c["q_lora_rank"] = None
    elif name in ("tiny-v2", "tiny-v2-greedy"):
        c["architectures"] = ["DeepseekV2ForCausalLM"]
        c["model_type"] = "deepseek_v2"
        c["q_lora_rank"] = None
        c["n_shared_experts"] = 2
        c["scoring_func"] = "softmax"
        c["norm_topk_prob"] = False
        # Deliberately != 1 so a missed multiply fails (section 11).
        c["routed_scaling_factor"] = 1.5
        del c["num_nextn_predict_layers"]
        c["rope_scaling"]["mscale"] = 0.707
        c["rope_scaling"]["mscale_all_dim"] = 0.707
        if name == "tiny-v2":
            c["topk_method"] = "group_limited_greedy"
            c["n_group"], c["topk_group"] = 4, 1
        else:
            c["topk_method"] = "greedy"
            c["n_group"], c["topk_group"] = 1, 1
    else:
        raise SystemExit("unknown preset %r (tiny tiny-noq tiny-v2 tiny-v2-greedy)" % name)
    return c


# ----------------------------------------------------------------------------------------------
# Tensor list (section 6.2 names/shapes, section 5 for the MTP layer)
# ----------------------------------------------------------------------------------------------

def _is_moe(c, l):
    return (c.get("n_routed_experts") is not None and l >= c["first_k_dense_replace"]
            and l % c.get("moe_layer_freq", 1) == 0)


def tensor_specs(c):
    """Yield (name, shape, kind) in a natural order.  kind selects init and storage dtype:
    'embed', 'norm', 'proj' (block matrices, fp8 in the FP8 release), 'router', 'bias',
    'eh_proj', 'head'."""
    D, V, H = c["hidden_size"], c["vocab_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    dq, dc = c.get("q_lora_rank") or 0, c["kv_lora_rank"]
    I, MI, E, S = c["intermediate_size"], c["moe_intermediate_size"], c["n_routed_experts"], c["n_shared_experts"]
    L = c["num_hidden_layers"]
    n_mtp = c.get("num_nextn_predict_layers") or 0

    def layer(l):
        p = "model.layers.%d." % l
        yield p + "input_layernorm.weight", [D], "norm"
        yield p + "post_attention_layernorm.weight", [D], "norm"
        a = p + "self_attn."
        if dq:
            yield a + "q_a_proj.weight", [dq, D], "proj"
            yield a + "q_a_layernorm.weight", [dq], "norm"
            yield a + "q_b_proj.weight", [H * (dn + dr), dq], "proj"
        else:
            yield a + "q_proj.weight", [H * (dn + dr), D], "proj"
        yield a + "kv_a_proj_with_mqa.weight", [dc + dr, D], "proj"
        yield a + "kv_a_layernorm.weight", [dc], "norm"
        yield a + "kv_b_proj.weight", [H * (dn + dv), dc], "proj"
        yield a + "o_proj.weight", [D, H * dv], "proj"
        m = p + "mlp."
        if _is_moe(c, l):
            yield m + "gate.weight", [E, D], "router"
            if c["topk_method"] == "noaux_tc":
                yield m + "gate.e_score_correction_bias", [E], "bias"
            for j in range(E):
                e = m + "experts.%d." % j
                yield e + "gate_proj.weight", [MI, D], "proj"
                yield e + "up_proj.weight", [MI, D], "proj"
                yield e + "down_proj.weight", [D, MI], "proj"
            yield m + "shared_experts.gate_proj.weight", [S * MI, D], "proj"
            yield m + "shared_experts.up_proj.weight", [S * MI, D], "proj"
            yield m + "shared_experts.down_proj.weight", [D, S * MI], "proj"
        else:
            yield m + "gate_proj.weight", [I, D], "proj"
            yield m + "up_proj.weight", [I, D], "proj"
            yield m + "down_proj.weight", [D, I], "proj"

    yield "model.embed_tokens.weight", [V, D], "embed"
    for l in range(L):
        yield from layer(l)
    yield "model.norm.weight", [D], "norm"
    yield "lm_head.weight", [V, D], "head"
    for k in range(n_mtp):
        l = L + k
        p = "model.layers.%d." % l
        yield p + "embed_tokens.weight", [V, D], "mtp_embed"
        yield p + "enorm.weight", [D], "norm"
        yield p + "hnorm.weight", [D], "norm"
        yield p + "eh_proj.weight", [D, 2 * D], "eh_proj"
        yield from layer(l)
        yield p + "shared_head.norm.weight", [D], "norm"
        yield p + "shared_head.head.weight", [V, D], "mtp_head"


def param_count(c):
    """(main, mtp_unique) with the formula of section 11 (MTP embed/head copies excluded)."""
    main = mtp = 0
    L = c["num_hidden_layers"]
    for name, shape, kind in tensor_specs(c):
        n = int(np.prod(shape))
        if name.startswith("model.layers."):
            l = int(name.split(".")[2])
            if l >= L:
                if kind not in ("mtp_embed", "mtp_head"):
                    mtp += n
                continue
        main += n
    return main, mtp


# ----------------------------------------------------------------------------------------------
# Random values
# ----------------------------------------------------------------------------------------------

def random_tensor(rng, name, shape, kind, c):
    if kind in ("embed", "mtp_embed"):
        return rng.normal(0.0, 1.0, shape)
    if kind == "norm":
        # Not all ones, so a skipped or misplaced norm weight changes the logits.
        return 1.0 + 0.2 * rng.normal(size=shape)
    if kind == "bias":
        # Section 11: random non-zero, some negative enough that biased sigmoid scores drop
        # below 0 (exposes -inf vs 0.0 group masking) and some large enough to change the
        # selected set compared with unbiased scores.
        b = rng.normal(-0.2, 0.5, shape)
        big = rng.choice(shape[0], size=max(1, shape[0] // 4), replace=False)
        b[big] = -rng.uniform(0.8, 1.5, size=big.shape)
        return b
    if kind == "router":
        # Spread router logits well apart so top-K has no near-ties in f32.
        return rng.normal(0.0, 0.5, shape)
    # Linear layers: std ~ 1/sqrt(fan_in), clamped to [0.02, 0.2] as asked, so activations keep
    # O(1) magnitude through the residual stream and logits are not degenerate.
    fan_in = shape[1]
    std = min(0.2, max(0.02, 1.0 / math.sqrt(fan_in)))
    if kind in ("head", "mtp_head"):
        std = 0.2
    return rng.normal(0.0, std, shape)


# ----------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------

def f32_to_bf16_bits(x):
    """float -> bfloat16 bit pattern, round to nearest even (no NaNs are produced here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def e4m3_value(code):
    """Value of one float8 e4m3fn code (section 6.3)."""
    s = -1.0 if code & 0x80 else 1.0
    e = (code >> 3) & 0xF
    m = code & 0x7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * 2.0 ** -6 * (m / 8.0)
    return s * 2.0 ** (e - 7) * (1.0 + m / 8.0)


_E4M3_POS = np.array([e4m3_value(c) for c in range(0x7F)])  # codes 0x00..0x7E, increasing


def to_e4m3_bits(x):
    """Round to the nearest e4m3fn value, ties to even code, clamped to +-448."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(_E4M3_POS, a), 1, len(_E4M3_POS) - 1)
    lo = hi - 1
    dlo, dhi = a - _E4M3_POS[lo], _E4M3_POS[hi] - a
    code = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    code = code.astype(np.uint8)
    return np.where(np.signbit(x) & (code != 0), code | 0x80, code).astype(np.uint8)


def quantize_fp8(w, block=(128, 128)):
    """Block-wise e4m3 quantisation: scale_inv = amax/448 per block (partial edge blocks)."""
    out, inn = w.shape
    bo, bi = block
    nb_o, nb_i = -(-out // bo), -(-inn // bi)
    scale = np.ones((nb_o, nb_i), dtype=np.float32)
    codes = np.zeros(w.shape, dtype=np.uint8)
    for r in range(nb_o):
        for k in range(nb_i):
            blk = w[r * bo:(r + 1) * bo, k * bi:(k + 1) * bi]
            amax = float(np.max(np.abs(blk)))
            s = np.float32(amax / 448.0) if amax > 0 else np.float32(1.0)
            scale[r, k] = s
            codes[r * bo:(r + 1) * bo, k * bi:(k + 1) * bi] = to_e4m3_bits(blk / np.float64(s))
    return codes, scale


# ----------------------------------------------------------------------------------------------
# safetensors writer
# ----------------------------------------------------------------------------------------------

def write_safetensors(path, tensors):
    """tensors: list of (name, dtype_str, shape, raw bytes).  Header padded with spaces to a
    multiple of 8 so the data region is 8-byte aligned."""
    header, off = {}, 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in tensors:
            f.write(data)
    os.replace(tmp, path)
    return off


def encode(name, shape, kind, val, dtype, block):
    """Return a list of (name, dtype, shape, bytes) entries (2 for an fp8 weight + scale)."""
    if kind == "bias":  # F32 in every release variant (section 6.3)
        return [(name, "F32", shape, val.astype("<f4").tobytes())]
    if dtype == "f32":
        return [(name, "F32", shape, val.astype("<f4").tobytes())]
    if dtype == "f16":
        return [(name, "F16", shape, val.astype("<f2").tobytes())]
    if dtype == "fp8" and kind == "proj":
        codes, scale = quantize_fp8(val, block)
        sname = name[:-len(".weight")] + ".weight_scale_inv"
        return [(name, "F8_E4M3", shape, codes.tobytes()),
                (sname, "F32", list(scale.shape), scale.astype("<f4").tobytes())]
    # bf16, and the non-block tensors of the fp8 variant.
    return [(name, "BF16", shape, f32_to_bf16_bits(val).astype("<u2").tobytes())]


def write_checkpoint(out_dir, preset, seed=1234, dtype="f32", distinct_mtp_copies=False, n_shards=2):
    c = preset_config(preset)
    block = [128, 128]
    if dtype == "fp8":
        c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                    "quant_method": "fp8", "weight_block_size": block}
    c["torch_dtype"] = {"f32": "float32", "f16": "float16"}.get(dtype, "bfloat16")
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)

    entries, values = [], {}
    for name, shape, kind in tensor_specs(c):
        if kind in ("mtp_embed", "mtp_head") and not distinct_mtp_copies:
            # The release stores copies of the main embedding / head (section 5).
            val = values["model.embed_tokens.weight" if kind == "mtp_embed" else "lm_head.weight"]
        else:
            val = random_tensor(rng, name, shape, kind, c)
        values[name] = val
        entries.extend(encode(name, shape, kind, val, dtype, block))

    # Split into n_shards of roughly equal bytes (a tensor never straddles shards).
    total = sum(len(e[3]) for e in entries)
    shards, cur, acc = [], [], 0
    for e in entries:
        cur.append(e)
        acc += len(e[3])
        if len(shards) < n_shards - 1 and acc >= total * (len(shards) + 1) / n_shards:
            shards.append(cur)
            cur = []
    shards.append(cur)
    while len(shards) < n_shards:
        shards.append([])
    weight_map = {}
    for i, sh in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n_shards)
        write_safetensors(os.path.join(out_dir, fname), sh)
        for e in sh:
            weight_map[e[0]] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True)
    ap.add_argument("-o", "--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", choices=["f32", "bf16", "f16", "fp8"], default="f32")
    ap.add_argument("--distinct-mtp-copies", action="store_true",
                    help="random MTP embed_tokens/shared_head.head instead of copies of the main ones")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--random-bias", action="store_true",
                    help="accepted for command-line parity with `deepseek init`; this script always draws "
                         "the routing bias at random (section 11)")
    a = ap.parse_args(argv)
    c = write_checkpoint(a.out, a.preset, a.seed, a.dtype, a.distinct_mtp_copies, a.shards)
    main_n, mtp_n = param_count(c)
    print("wrote %s (%s, %s): %d main + %d MTP params" % (a.out, a.preset, a.dtype, main_n, mtp_n))


if __name__ == "__main__":
    main()
