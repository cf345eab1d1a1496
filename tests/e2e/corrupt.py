#!/usr/bin/env python3
"""Makes one malformed variant of a model folder written by `deepseek init` (f32, tiny).

usage: corrupt.py SRC_DIR DST_DIR CASE
Standard library only. Every case edits one thing so the loader's message can name it."""
import json, os, shutil, struct, sys

src, dst, case = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst)
index = json.load(open(os.path.join(dst, "model.safetensors.index.json")))
shard = os.path.join(dst, sorted(set(index["weight_map"].values()))[0])


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)


def first_tensor(header):
    return sorted(k for k in header if k != "__metadata__")[0]


header, data = read(shard)
name = first_tensor(header)
if case == "truncated":
    raw = open(shard, "rb").read()
    open(shard, "wb").write(raw[: len(raw) // 2])
elif case == "header_len":
    raw = open(shard, "rb").read()
    open(shard, "wb").write(struct.pack("<Q", len(raw) * 4) + raw[8:])
elif case == "bad_json":
    raw = open(shard, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    open(shard, "wb").write(raw[:8] + b"{" * 3 + raw[11:])
elif case == "offsets":
    header[name]["data_offsets"][1] = len(data) + 4096
    write(shard, header, data)
elif case == "overlap":
    names = sorted(k for k in header if k != "__metadata__")
    a, b = header[names[0]], header[names[1]]
    if a["dtype"] == b["dtype"] and a["shape"] == b["shape"]:
        b["data_offsets"] = list(a["data_offsets"])
    else:  # make b start inside a while keeping its size
        size = b["data_offsets"][1] - b["data_offsets"][0]
        b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + size]
    write(shard, header, data)
elif case == "dtype":
    header[name]["dtype"] = "I64"
    write(shard, header, data)
elif case == "size":
    header[name]["shape"] = [header[name]["shape"][0] + 1] + header[name]["shape"][1:]
    write(shard, header, data)
elif case == "missing":
    victim = "model.layers.1.self_attn.kv_b_proj.weight"
    del index["weight_map"][victim]
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
    for f in set(index["weight_map"].values()) | {os.path.basename(shard)}:
        p = os.path.join(dst, f)
        h, d = read(p)
        if victim in h:
            del h[victim]
            write(p, h, d)
elif case == "unexpected":
    h, d = read(shard)
    h["model.layers.0.mystery.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(d), len(d) + 4]}
    write(shard, h, d + b"\0" * 4)
    index["weight_map"]["model.layers.0.mystery.weight"] = os.path.basename(shard)
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
elif case == "shape_config":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["kv_lora_rank"] = cfg["kv_lora_rank"] * 2
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
elif case == "config_key":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    del cfg["hidden_size"]
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
elif case == "config_type":
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["model_type"] = "llama4"
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
elif case == "index_shard":
    index["weight_map"][name] = "model-99999-of-99999.safetensors"
    json.dump(index, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
else:
    sys.exit("unknown case " + case)
