#!/usr/bin/python3
"""Independent float64 PyTorch reference for DeepSeek-V2/V3/R1 checkpoints (HF layout).

Written from docs/deepseek-architecture.md (sections 2-6 and 11) only, for golden fixtures
of the C engine.  Speed is irrelevant: every weight is dequantised and converted to float64,
attention is computed with full score matrices and an explicit causal mask, and the MoE is
evaluated token by token, expert by expert.

    /usr/bin/python3 tools/reference.py --model DIR --ids 0,17,42 --out logits.npy
        [--mtp]              MTP head logits instead, shape [T-1, V] (section 5)
        [--check-absorbed]   also run the absorbed-MLA form (section 3.4); fail unless it
                             matches the naive form to 1e-9 (relative to max |value|)
    /usr/bin/python3 tools/reference.py --model DIR --ids 0,17,42 --grad OUT.safetensors
        [--mtp-weight W]     add W * MTP cross-entropy (default 0: MTP not run)
        [--balance-alpha A]  add the sequence-wise balance loss (default 0)
    /usr/bin/python3 tools/reference.py --selftest

Gradient mode (--grad), for checking a trainer's backward pass against autograd:
  * Every checkpoint tensor except e_score_correction_bias (selection only, never trained),
    fp8 weight_scale_inv companions and the MTP layer's embed_tokens / shared_head.head copies
    is a float64 leaf (fp8 dequantised first).  The MTP block uses model.embed_tokens.weight
    and lm_head.weight themselves (physically shared, as in DeepSeek-V3 training), so their
    gradients include the MTP contribution.
  * ids t_0..t_{T-1}: the main model runs on t_0..t_{T-2} (positions 0..T-2);
    ce = mean_{t=0..T-2} CE(logits_t, t_{t+1}).
  * W > 0: the MTP module (section 5, embedding first) runs on i = 0..T-3 with Emb(t_{i+1})
    and h_i = main final hidden AFTER model.norm, positions 0..T-3;
    mtp = mean_{i=0..T-3} CE(mtp_logits_i, t_{i+2}).  W = 0: the MTP block is not run, mtp = 0.
  * A > 0: balance = A * sum over MoE layers (main layers over their T-1 tokens; the MTP block
    over its T-2 tokens iff W > 0) of sum_i f_i P_i, f_i = E/(K T') * #tokens that SELECTED
    expert i (bias and group limit applied; constant), P_i = mean_t s_{i,t} / sum_j s_{j,t},
    s = sigmoid or softmax of the router logits over all E experts.  Not multiplied by W.
  * loss = ce + W * mtp + balance.  Gate weights w_k = rsf * s[idx_k] (/ sum of selected s iff
    norm_topk_prob); the gradient flows through s, never through the top-k selection.
  * stdout: one JSON line {"loss", "ce", "mtp", "balance"}; OUT: safetensors, F32 gradient of
    every trainable tensor under its HF name and shape (zeros where no gradient reaches it:
    experts never selected, MTP tensors when W = 0), names sorted, loss values as strings in
    __metadata__.

Choices where the spec leaves room:
  * MoE noaux_tc: groups not kept are masked with -inf (official code), weights are the
    unbiased scores, renormalised iff norm_topk_prob with NO epsilon in the denominator
    (official code; HF adds 1e-20), then always multiplied by routed_scaling_factor.
  * Routing ties are broken towards the lower expert index; the script reports the smallest
    gap at every selection boundary so a fixture with a near-tie (which f32 could flip) is
    visible.
  * All RMSNorms, the latent ones included, use config rms_norm_eps.
  * YaRN: factor, original_max_position_embeddings and mscale_all_dim must be present (the
    sources disagree on the default of mscale_all_dim: HF 0, official 1.0); beta_fast,
    beta_slow and mscale default to 32, 1 and 1.0 (the same in every source).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
F64 = torch.float64


class RefError(Exception):
    pass


# ==============================================================================================
# float8 e4m3fn (section 6.3): 1 sign, 4 exponent (bias 7), 3 mantissa, subnormals when the
# exponent field is 0, no infinities, NaN only for S.1111.111 (0x7F, 0xFF).
# ==============================================================================================

def _e4m3(code):
    sign = -1.0 if code & 0x80 else 1.0
    e, m = (code >> 3) & 0xF, code & 0x7
    if e == 0xF and m == 0x7:
        return float("nan")
    if e == 0:
        return sign * 2.0 ** -6 * (m / 8.0)
    return sign * 2.0 ** (e - 7) * (1.0 + m / 8.0)


FP8_E4M3_TABLE = np.array([_e4m3(c) for c in range(256)], dtype=np.float64)


# ==============================================================================================
# safetensors (section 6.1), parsed by hand: u64 LE header length, JSON header, data region.
# ==============================================================================================

_DTYPES = {"F32": ("<f4", 4), "BF16": ("<u2", 2), "F16": ("<f2", 2), "F8_E4M3": ("u1", 1)}


class SafetensorsFile:
    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise RefError("%s: shorter than the 8-byte header length" % path)
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8:
                raise RefError("%s: header length %d beyond end of file" % (path, n))
            header = json.loads(f.read(n).decode("utf-8"))
        self.data_start = 8 + n
        data_len = size - self.data_start
        header.pop("__metadata__", None)
        self.info = header
        # Offsets are relative to the data region and must tile it exactly.
        spans = []
        for name, t in header.items():
            if t["dtype"] not in _DTYPES:
                raise RefError("%s: tensor %s has unsupported dtype %s" % (path, name, t["dtype"]))
            b, e = t["data_offsets"]
            want = int(np.prod(t["shape"], dtype=np.int64)) * _DTYPES[t["dtype"]][1]
            if e - b != want:
                raise RefError("%s: tensor %s spans %d bytes, shape needs %d" % (path, name, e - b, want))
            spans.append((b, e, name))
        spans.sort()
        pos = 0
        for b, e, name in spans:
            if b != pos:
                raise RefError("%s: data offsets do not tile the data region at %s" % (path, name))
            pos = e
        if pos != data_len:
            raise RefError("%s: data region is %d bytes, tensors cover %d" % (path, data_len, pos))
        self.mm = np.memmap(path, dtype=np.uint8, mode="r") if size > 0 else None

    def read(self, name):
        """Raw values as float64 numpy (fp8 NOT scaled) and the stored dtype string."""
        t = self.info[name]
        b, e = t["data_offsets"]
        buf = np.asarray(self.mm[self.data_start + b:self.data_start + e])
        np_dt, _ = _DTYPES[t["dtype"]]
        a = buf.view(np_dt)
        if t["dtype"] == "BF16":
            # bf16 is the top half of an f32 bit pattern.
            a = (a.astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F8_E4M3":
            a = FP8_E4M3_TABLE[a]
        return a.astype(np.float64).reshape(t["shape"]), t["dtype"]


class Checkpoint:
    """Tensor name -> float64 torch tensor, dequantising fp8 on read."""

    def __init__(self, model_dir, block=(128, 128)):
        self.block = block
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        single = os.path.join(model_dir, "model.safetensors")
        self.where = {}
        files = {}
        if os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            for name, fname in wm.items():
                if fname not in files:
                    files[fname] = SafetensorsFile(os.path.join(model_dir, fname))
                if name not in files[fname].info:
                    raise RefError("index maps %s to %s, which does not contain it" % (name, fname))
                self.where[name] = files[fname]
        elif os.path.exists(single):
            st = SafetensorsFile(single)
            self.where = {n: st for n in st.info}
        else:
            raise RefError("%s: neither model.safetensors.index.json nor model.safetensors" % model_dir)

    def has(self, name):
        return name in self.where

    def get(self, name, shape=None):
        if name not in self.where:
            raise RefError("missing tensor %s" % name)
        a, dt = self.where[name].read(name)
        sname = name + "_scale_inv"  # "<prefix>.weight" -> "<prefix>.weight_scale_inv"
        if dt == "F8_E4M3":
            if sname not in self.where:
                raise RefError("fp8 tensor %s has no %s" % (name, sname))
            s, _ = self.where[sname].read(sname)
            out, inn = a.shape
            bo, bi = self.block
            if list(s.shape) != [-(-out // bo), -(-inn // bi)]:
                raise RefError("%s shape %s, expected [ceil(%d/%d), ceil(%d/%d)]" % (sname, list(s.shape), out, bo, inn, bi))
            # W[r][c] = fp8[r][c] * scale_inv[r // bo][c // bi]  (integer division; edge
            # blocks are partial).
            r = np.arange(out)[:, None] // bo
            c = np.arange(inn)[None, :] // bi
            a = a * s[r, c]
        elif sname in self.where:
            raise RefError("%s is %s but has a %s companion" % (name, dt, sname))
        if np.isnan(a).any():
            raise RefError("%s contains NaN" % name)
        if shape is not None and list(a.shape) != list(shape):
            raise RefError("%s has shape %s, expected %s" % (name, list(a.shape), list(shape)))
        return torch.from_numpy(np.ascontiguousarray(a))


# ==============================================================================================
# Config (section 2)
# ==============================================================================================

def get_mscale(s, m):
    """Section 4.3: 1 for s <= 1, else 0.1*m*ln(s) + 1."""
    return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0


def yarn_inv_freq(dim, base, factor, L0, beta_fast, beta_slow):
    """Section 4.2, written out term by term in float64."""
    def corr_dim(r):
        return dim * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(base))
    low = max(math.floor(corr_dim(beta_fast)), 0)
    high = min(math.ceil(corr_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    inv = []
    for i in range(dim // 2):
        freq = base ** (-2.0 * i / dim)
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        keep = 1.0 - ramp
        inv.append((freq / factor) * (1.0 - keep) + freq * keep)
    return torch.tensor(inv, dtype=F64), low, high


class Config:
    def __init__(self, d):
        self.raw = d
        mt = d.get("model_type")
        if mt not in ("deepseek_v3", "deepseek_v2"):
            raise RefError("config: model_type %r is not deepseek_v3/deepseek_v2" % mt)
        g = lambda k: self._req(d, k)
        self.V, self.D, self.L = g("vocab_size"), g("hidden_size"), g("num_hidden_layers")
        self.H = g("num_attention_heads")
        self.dn, self.dr, self.dv = g("qk_nope_head_dim"), g("qk_rope_head_dim"), g("v_head_dim")
        self.dq = d.get("q_lora_rank") or 0  # null / 0 / absent -> q_proj
        self.dc = g("kv_lora_rank")
        self.I = g("intermediate_size")
        self.E = d.get("n_routed_experts")
        self.MI = d.get("moe_intermediate_size")
        self.S = d.get("n_shared_experts") or 0
        self.K = d.get("num_experts_per_tok")
        self.n_group = d.get("n_group") or 1
        self.topk_group = d.get("topk_group") or 1
        self.rsf = float(d.get("routed_scaling_factor", 1.0))
        self.scoring = d.get("scoring_func", "softmax")
        self.topk_method = d.get("topk_method", "greedy")
        if self.topk_method == "gready":  # earliest V2 remote-code spelling
            self.topk_method = "greedy"
        self.norm_topk = bool(d.get("norm_topk_prob", False))
        self.first_dense = d.get("first_k_dense_replace", 0)
        self.moe_freq = d.get("moe_layer_freq", 1)
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.n_mtp = d.get("num_nextn_predict_layers") or 0
        if self.scoring not in ("sigmoid", "softmax"):
            raise RefError("config: scoring_func %r" % self.scoring)
        if self.topk_method not in ("noaux_tc", "group_limited_greedy", "greedy"):
            raise RefError("config: topk_method %r" % self.topk_method)
        if d.get("hidden_act", "silu") != "silu":
            raise RefError("config: hidden_act %r" % d.get("hidden_act"))
        if self.E is not None:
            if self.E % self.n_group:
                raise RefError("config: n_routed_experts %d not divisible by n_group %d" % (self.E, self.n_group))
            if self.topk_method != "greedy" and self.topk_group * (self.E // self.n_group) < self.K:
                raise RefError("config: topk_group groups hold fewer than num_experts_per_tok experts")

        # RoPE / YaRN: rope_scaling, or transformers-5 rope_parameters.
        rs = d.get("rope_scaling")
        rp = d.get("rope_parameters")
        self.theta = float(d.get("rope_theta", (rp or {}).get("rope_theta", 10000.0)))
        if rs is None and rp is not None:
            rs = rp
        rtype = None if rs is None else (rs.get("type") or rs.get("rope_type"))
        qk = self.dn + self.dr
        if rtype in (None, "default"):
            self.inv_freq = torch.tensor([self.theta ** (-2.0 * i / self.dr) for i in range(self.dr // 2)], dtype=F64)
            self.softmax_scale = qk ** -0.5
            self.rope_mul = 1.0
            self.yarn = None
        elif rtype == "yarn":
            for k in ("factor", "original_max_position_embeddings", "mscale_all_dim"):
                if k not in rs:
                    raise RefError("config: rope_scaling yarn without %s" % k)
            f = float(rs["factor"])
            ms, msa = float(rs.get("mscale", 1.0)), float(rs["mscale_all_dim"])
            self.inv_freq, lo, hi = yarn_inv_freq(self.dr, self.theta, f, float(rs["original_max_position_embeddings"]),
                                                  float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1)))
            self.softmax_scale = qk ** -0.5 * get_mscale(f, msa) ** 2
            self.rope_mul = get_mscale(f, ms) / get_mscale(f, msa)
            self.yarn = (lo, hi)
        else:
            raise RefError("config: rope_scaling type %r not supported" % rtype)

    @staticmethod
    def _req(d, k):
        if d.get(k) is None:
            raise RefError("config: missing %s" % k)
        return d[k]

    def is_moe(self, l):
        return self.E is not None and l >= self.first_dense and l % self.moe_freq == 0


# ==============================================================================================
# Building blocks (sections 3.2-3.6)
# ==============================================================================================

def rmsnorm(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def silu(z):
    return z / (1.0 + torch.exp(-z))


def swiglu(x, gate, up, down):
    return down @ (silu(gate @ x) * (up @ x))


def rope(x, pos, inv_freq, mul):
    """Rotate consecutive pairs (2i, 2i+1) of the last dim by pos*inv_freq[i] (section 4.1).
    x: [T, ..., dr]; pos: [T]."""
    ang = pos.to(F64)[:, None] * inv_freq[None, :]  # [T, dr/2]
    shape = [x.shape[0]] + [1] * (x.dim() - 2) + [ang.shape[1]]
    cos, sin = (torch.cos(ang) * mul).reshape(shape), (torch.sin(ang) * mul).reshape(shape)
    xe, xo = x[..., 0::2], x[..., 1::2]
    y = torch.empty_like(x)
    y[..., 0::2] = xe * cos - xo * sin
    y[..., 1::2] = xe * sin + xo * cos
    return y


def causal_softmax(scores):
    """scores [T, T]: query t may see keys j <= t."""
    T = scores.shape[0]
    mask = torch.triu(torch.full((T, T), float("-inf"), dtype=F64), diagonal=1)
    return torch.softmax(scores + mask, dim=-1)


class Stats:
    """Diagnostics that tell whether a fixture exercises the routing corner cases and whether
    an f32 implementation could legitimately disagree."""

    def __init__(self):
        self.absorbed_max_rel = 0.0
        self.min_expert_gap = float("inf")   # gap between K-th and (K+1)-th candidate
        self.min_group_gap = float("inf")    # gap between topk_group-th and next group score
        self.bias_changes_selection = 0      # tokens whose set differs without the bias
        self.zero_fill_changes_selection = 0  # tokens whose set differs with 0.0 group fill
        self.group_limit_changes_selection = 0  # tokens whose set differs without the group limit
        self.routed_tokens = 0


def topk_desc(v, k):
    """Indices of the k largest values, ties towards the lower index (stable sort)."""
    order = sorted(range(len(v)), key=lambda i: (-v[i], i))
    return order[:k], order


class Model:
    def __init__(self, model_dir, check_absorbed=False, grad=False):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = Config(json.load(f))
        qc = self.cfg.raw.get("quantization_config") or {}
        self.ck = Checkpoint(model_dir, tuple(qc.get("weight_block_size", (128, 128))))
        self.check_absorbed = check_absorbed
        self.stats = Stats()
        # Gradient mode: parameters are float64 leaves created on first use and reused, the
        # MTP block uses the main embedding / head (tied), and every MoE layer records its
        # per-token scores and selection for the balance loss.
        self.grad = grad
        self.params = {}
        self.moe_log = {}  # layer -> [(s [E] tensor, selected expert ids)]

    def w(self, name, shape=None):
        if not self.grad:
            return self.ck.get(name, shape)
        if name not in self.params:
            self.params[name] = self.ck.get(name, shape).requires_grad_(True)
        t = self.params[name]
        if shape is not None and list(t.shape) != list(shape):
            raise RefError("%s has shape %s, expected %s" % (name, list(t.shape), list(shape)))
        return t

    # ---------------------------------------------------------------- MLA (sections 3.3, 3.4)
    def attention(self, l, x, pos):
        c = self.cfg
        p = "model.layers.%d.self_attn." % l
        T, H, dn, dr, dv, dc = x.shape[0], c.H, c.dn, c.dr, c.dv, c.dc
        if c.dq:
            cq = rmsnorm(x @ self.w(p + "q_a_proj.weight", [c.dq, c.D]).T,
                         self.w(p + "q_a_layernorm.weight", [c.dq]), c.eps)
            q = cq @ self.w(p + "q_b_proj.weight", [H * (dn + dr), c.dq]).T
        else:
            q = x @ self.w(p + "q_proj.weight", [H * (dn + dr), c.D]).T
        q = q.reshape(T, H, dn + dr)
        q_nope, q_pe = q[:, :, :dn], rope(q[:, :, dn:], pos, c.inv_freq, c.rope_mul)

        kv = x @ self.w(p + "kv_a_proj_with_mqa.weight", [dc + dr, c.D]).T
        cn = rmsnorm(kv[:, :dc], self.w(p + "kv_a_layernorm.weight", [dc]), c.eps)
        k_pe = rope(kv[:, dc:], pos, c.inv_freq, c.rope_mul)  # rotated, never normalised
        wkvb = self.w(p + "kv_b_proj.weight", [H * (dn + dv), dc])
        wo = self.w(p + "o_proj.weight", [c.D, H * dv])

        # Naive form: materialise per-head K and V.
        kvb = (cn @ wkvb.T).reshape(T, H, dn + dv)
        heads = []
        for h in range(H):
            qf = torch.cat([q_nope[:, h], q_pe[:, h]], dim=-1)             # [T, dn+dr]
            k = torch.cat([kvb[:, h, :dn], k_pe], dim=-1)                   # [T, dn+dr]
            v = kvb[:, h, dn:]                                              # [T, dv]
            prob = causal_softmax(c.softmax_scale * (qf @ k.T))
            heads.append(prob @ v)
        out = torch.cat(heads, dim=-1) @ wo.T

        if self.check_absorbed:
            # Absorbed form: attention over the latent cache (cn, k_pe) only.
            wkvb_h = wkvb.reshape(H, dn + dv, dc)
            heads = []
            for h in range(H):
                w_uk, w_uv = wkvb_h[h, :dn], wkvb_h[h, dn:]                 # [dn, dc], [dv, dc]
                q_abs = q_nope[:, h] @ w_uk                                 # [T, dc] = W_UK^T q_nope
                scores = c.softmax_scale * (q_abs @ cn.T + q_pe[:, h] @ k_pe.T)
                lat = causal_softmax(scores) @ cn                           # [T, dc]
                heads.append(lat @ w_uv.T)                                  # [T, dv]
            out_abs = torch.cat(heads, dim=-1) @ wo.T
            rel = ((out_abs - out).abs().max() / max(out.abs().max().item(), 1e-300)).item()
            self.stats.absorbed_max_rel = max(self.stats.absorbed_max_rel, rel)
            if not rel <= 1e-9:
                raise RefError("layer %d: absorbed MLA differs from naive by %.3g (relative)" % (l, rel))
        return out

    # ---------------------------------------------------------------- FFN (sections 3.5, 3.6)
    def dense_mlp(self, l, x):
        c = self.cfg
        p = "model.layers.%d.mlp." % l
        g, u, d = (self.w(p + "gate_proj.weight", [c.I, c.D]), self.w(p + "up_proj.weight", [c.I, c.D]),
                   self.w(p + "down_proj.weight", [c.D, c.I]))
        return torch.stack([swiglu(x[t], g, u, d) for t in range(x.shape[0])])

    def route(self, logits, bias):
        """One token: (selected expert ids, their weights).  Python floats throughout so the
        selection logic reads like section 3.6."""
        c, st = self.cfg, self.stats
        E, K, G, TG = c.E, c.K, c.n_group, c.topk_group
        if c.scoring == "sigmoid":
            # Both branches are the logistic function; split so exp never overflows.
            s = [1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z)) for z in logits]
        else:
            m = max(logits)  # softmax over all E experts
            ex = [math.exp(z - m) for z in logits]
            tot = sum(ex)
            s = [e / tot for e in ex]
        gs = E // G

        def select(sel_scores, group_score_fn, fill, record=False):
            """Group limit, then top-K; returns (idx, full candidate order, masked scores)."""
            sb = list(sel_scores)
            if G > 1 and c.topk_method != "greedy":
                gscore = [group_score_fn(sb[g * gs:(g + 1) * gs]) for g in range(G)]
                keep, gorder = topk_desc(gscore, TG)
                if record and TG < G:
                    st.min_group_gap = min(st.min_group_gap, gscore[gorder[TG - 1]] - gscore[gorder[TG]])
                for e in range(E):
                    if e // gs not in keep:
                        sb[e] = fill
            idx, order = topk_desc(sb, K)
            if record and K < E:
                st.min_expert_gap = min(st.min_expert_gap, sb[order[K - 1]] - sb[order[K]])
            return idx, order, sb

        if c.topk_method == "noaux_tc":
            if bias is None:
                raise RefError("noaux_tc needs mlp.gate.e_score_correction_bias")
            sel = [s[e] + bias[e] for e in range(E)]  # bias: selection only
            top2 = lambda v: sum(sorted(v, reverse=True)[:2])
            idx, order, sb = select(sel, top2, float("-inf"), record=True)
            # Diagnostics: would HF's 0.0 fill, or dropping the bias, pick other experts?
            if set(select(sel, top2, 0.0)[0]) != set(idx):
                st.zero_fill_changes_selection += 1
            if set(select(s, top2, float("-inf"))[0]) != set(idx):
                st.bias_changes_selection += 1
        elif c.topk_method == "group_limited_greedy":
            idx, order, sb = select(s, max, float("-inf"), record=True)  # group score = max, no bias
        else:
            idx, order, sb = select(s, None, float("-inf"), record=True)
        st.routed_tokens += 1
        # Does the group limit matter at all?  (With group score = max and topk_group >= K it
        # never can: the K best experts lie in at most K groups, each of which ranks top.)
        plain = sel if c.topk_method == "noaux_tc" else s
        if set(topk_desc(plain, K)[0]) != set(idx):
            st.group_limit_changes_selection += 1

        w = [s[e] for e in idx]  # unbiased scores
        if c.norm_topk:
            tot = sum(w)         # official code: no epsilon (HF adds 1e-20)
            w = [x / tot for x in w]
        return idx, [x * c.rsf for x in w]

    def moe(self, l, x):
        c = self.cfg
        p = "model.layers.%d.mlp." % l
        gate = self.w(p + "gate.weight", [c.E, c.D])
        bname = p + "gate.e_score_correction_bias"
        bias = self.ck.get(bname, [c.E]).tolist() if self.ck.has(bname) else None  # never trained
        experts = [(self.w(p + "experts.%d.gate_proj.weight" % j, [c.MI, c.D]),
                    self.w(p + "experts.%d.up_proj.weight" % j, [c.MI, c.D]),
                    self.w(p + "experts.%d.down_proj.weight" % j, [c.D, c.MI])) for j in range(c.E)]
        shared = None
        if c.S:
            sw = c.S * c.MI
            shared = (self.w(p + "shared_experts.gate_proj.weight", [sw, c.D]),
                      self.w(p + "shared_experts.up_proj.weight", [sw, c.D]),
                      self.w(p + "shared_experts.down_proj.weight", [c.D, sw]))
        ys = []
        for t in range(x.shape[0]):
            z = gate @ x[t]
            idx, wts = self.route(z.detach().tolist(), bias)
            if self.grad:
                # Same selection; weights recomputed as tensors so the gradient flows through
                # the scores s (never through the choice of idx).
                s = torch.sigmoid(z) if c.scoring == "sigmoid" else torch.softmax(z, dim=-1)
                wsel = s[idx]
                if c.norm_topk:
                    wsel = wsel / wsel.sum()
                wts = list(wsel * c.rsf)
                self.moe_log.setdefault(l, []).append((s, list(idx)))
            y = torch.zeros(c.D, dtype=F64)
            for e, wk in zip(idx, wts):
                y = y + wk * swiglu(x[t], *experts[e])
            if shared is not None:
                y = y + swiglu(x[t], *shared)  # unweighted
            ys.append(y)
        return torch.stack(ys)

    # ---------------------------------------------------------------- blocks (section 3.1)
    def block(self, l, h, pos):
        c = self.cfg
        p = "model.layers.%d." % l
        h = h + self.attention(l, rmsnorm(h, self.w(p + "input_layernorm.weight", [c.D]), c.eps), pos)
        x = rmsnorm(h, self.w(p + "post_attention_layernorm.weight", [c.D]), c.eps)
        return h + (self.moe(l, x) if c.is_moe(l) else self.dense_mlp(l, x))

    def forward(self, ids):
        """Returns (logits [T, V], final hidden AFTER model.norm [T, D])."""
        c = self.cfg
        pos = torch.arange(len(ids))
        h = self.w("model.embed_tokens.weight", [c.V, c.D])[torch.tensor(ids)]
        for l in range(c.L):
            h = self.block(l, h, pos)
        hf = rmsnorm(h, self.w("model.norm.weight", [c.D]), c.eps)
        return hf @ self.w("lm_head.weight", [c.V, c.D]).T, hf

    def forward_mtp(self, ids, hf):
        """Section 5, depth 1.  MTP position i (0..T-2) combines Emb(t_{i+1}) with the main
        model's final (post-norm) hidden state h_i, at RoPE position i."""
        c = self.cfg
        L = c.L
        p = "model.layers.%d." % L
        if not self.ck.has(p + "eh_proj.weight"):
            raise RefError("--mtp: checkpoint has no %seh_proj.weight" % p)
        if len(ids) < 2:
            raise RefError("--mtp needs at least 2 ids")
        # Inference reads the layer-L copies when stored; gradient mode ties them to the main
        # tensors (DeepSeek-V3 training shares them physically).
        tied = self.grad
        emb_name = p + "embed_tokens.weight" if not tied and self.ck.has(p + "embed_tokens.weight") else "model.embed_tokens.weight"
        head_name = p + "shared_head.head.weight" if not tied and self.ck.has(p + "shared_head.head.weight") else "lm_head.weight"
        e = rmsnorm(self.w(emb_name, [c.V, c.D])[torch.tensor(ids[1:])], self.w(p + "enorm.weight", [c.D]), c.eps)
        hh = rmsnorm(hf[:-1], self.w(p + "hnorm.weight", [c.D]), c.eps)
        u = torch.cat([e, hh], dim=-1) @ self.w(p + "eh_proj.weight", [c.D, 2 * c.D]).T  # embedding FIRST
        u = self.block(L, u, torch.arange(len(ids) - 1))
        return rmsnorm(u, self.w(p + "shared_head.norm.weight", [c.D]), c.eps) @ self.w(head_name, [c.V, c.D]).T


def run(model_dir, ids, mtp=False, check_absorbed=False, log=sys.stderr):
    m = Model(model_dir, check_absorbed)
    c = m.cfg
    bad = [i for i in ids if not 0 <= i < c.V]
    if bad:
        raise RefError("ids %s outside [0, %d)" % (bad, c.V))
    logits, hf = m.forward(ids)
    out = m.forward_mtp(ids, hf) if mtp else logits
    st = m.stats
    if log:
        print("reference: %s T=%d V=%d %s: max|logit| %.4g, mean std %.4g" % (
            model_dir, len(ids), c.V, "MTP" if mtp else "main", out.abs().max().item(),
            out.std(dim=-1).mean().item()), file=log)
        if check_absorbed:
            print("  absorbed vs naive MLA: max relative diff %.3g" % st.absorbed_max_rel, file=log)
        _log_routing(st, log)
    return out, m


def _log_routing(st, log):
    if st.routed_tokens:
        print("  routing (%d token-layers): min top-K gap %.3g, min group gap %s; sets changed by: "
              "group limit %d, bias %d, 0.0 instead of -inf fill %d" % (
                  st.routed_tokens, st.min_expert_gap,
                  "%.3g" % st.min_group_gap if st.min_group_gap != float("inf") else "n/a",
                  st.group_limit_changes_selection, st.bias_changes_selection,
                  st.zero_fill_changes_selection), file=log)
        if st.min_expert_gap < 1e-5 or st.min_group_gap < 1e-5:
            print("  WARNING: a routing decision is within 1e-5 of a tie; f32 engines may differ", file=log)


# ==============================================================================================
# Gradient mode (see the module docstring)
# ==============================================================================================

def cross_entropy(logits, targets):
    """Mean over rows of -log softmax(logits_r)[targets_r]."""
    tgt = torch.tensor(targets)
    return (torch.logsumexp(logits, dim=-1) - logits[torch.arange(len(targets)), tgt]).mean()


def balance_term(cfg, records):
    """sum_i f_i P_i for one MoE layer (section 8), from its [(s, idx)] per token."""
    E, K, T = cfg.E, cfg.K, len(records)
    s = torch.stack([r[0] for r in records])                 # [T, E]
    P = (s / s.sum(dim=-1, keepdim=True)).mean(dim=0)         # [E]
    counts = torch.zeros(E, dtype=F64)
    for _, idx in records:
        for e in idx:
            counts[e] += 1.0
    f = counts * (E / (K * T))                                # constant
    return (f * P).sum()


def grad_losses(m, ids, mtp_weight=0.0, balance_alpha=0.0):
    """Loss parts (0-d float64 tensors) of gradient mode on a Model built with grad=True.
    Also returns the main and MTP logits (None when not run)."""
    c = m.cfg
    if len(ids) < 2:
        raise RefError("--grad needs at least 2 ids")
    if mtp_weight > 0:
        if c.n_mtp < 1:
            raise RefError("--mtp-weight > 0 but the checkpoint has no MTP layer")
        if len(ids) < 3:
            raise RefError("--mtp-weight > 0 needs at least 3 ids")
    m.moe_log = {}
    inputs = ids[:-1]
    logits, hf = m.forward(inputs)
    ce = cross_entropy(logits, ids[1:])
    zero = torch.zeros((), dtype=F64)
    mtp, mtp_logits = zero, None
    if mtp_weight > 0:
        mtp_logits = m.forward_mtp(inputs, hf)               # rows i = 0..T-3
        mtp = cross_entropy(mtp_logits, ids[2:])
    bal = zero
    if balance_alpha > 0:
        for l in sorted(m.moe_log):
            bal = bal + balance_term(c, m.moe_log[l])
        bal = balance_alpha * bal
    loss = ce + mtp_weight * mtp + bal
    return {"loss": loss, "ce": ce, "mtp": mtp, "balance": bal}, logits, mtp_logits


def trainable_names(m):
    """Checkpoint tensors that get a gradient entry, sorted."""
    L = m.cfg.L
    tied = set()
    for k in range(m.cfg.n_mtp):
        tied |= {"model.layers.%d.embed_tokens.weight" % (L + k), "model.layers.%d.shared_head.head.weight" % (L + k)}
    return sorted(n for n in m.ck.where
                  if not n.endswith("_scale_inv") and not n.endswith(".e_score_correction_bias") and n not in tied)


def run_grad(model_dir, ids, mtp_weight=0.0, balance_alpha=0.0, log=sys.stderr):
    """Returns (loss parts as floats, [(name, float64 numpy gradient)] sorted by name)."""
    m = Model(model_dir, grad=True)
    c = m.cfg
    bad = [i for i in ids if not 0 <= i < c.V]
    if bad:
        raise RefError("ids %s outside [0, %d)" % (bad, c.V))
    parts, _, _ = grad_losses(m, ids, mtp_weight, balance_alpha)
    parts["loss"].backward()
    grads = []
    for n in trainable_names(m):
        p = m.params.get(n)
        if p is not None and p.grad is not None:
            g = p.grad.detach().numpy()
        else:  # never reached (expert never selected, MTP with W = 0)
            g = np.zeros(m.ck.where[n].info[n]["shape"], dtype=np.float64)
        grads.append((n, g))
    vals = {k: v.item() for k, v in parts.items()}
    if log:
        print("reference: %s grad T=%d (main %d tokens, MTP %d) W=%g A=%g: loss %.9g ce %.9g mtp %.9g balance %.6g" % (
            model_dir, len(ids), len(ids) - 1, len(ids) - 2 if mtp_weight > 0 else 0, mtp_weight, balance_alpha,
            vals["loss"], vals["ce"], vals["mtp"], vals["balance"]), file=log)
        _log_routing(m.stats, log)
    return vals, grads


def write_f32_safetensors(path, tensors, metadata):
    """tensors: [(name, array)] written as F32 in this order, contiguous, no gaps; metadata:
    {str: str}.  u64 LE header length, JSON header padded with spaces to a multiple of 8."""
    header = {"__metadata__": dict(metadata)}
    blobs, off = [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ==============================================================================================
# Self-test (pinned values from sections 3.3, 4.2, 4.3, 6.3, plus invariants on a tiny model)
# ==============================================================================================

def _close(a, b, rel, what):
    if not abs(a - b) <= rel * abs(b):
        raise AssertionError("%s: got %.9g, want %.9g" % (what, a, b))


def selftest():
    # Section 4.2 (V3: dr 64, theta 1e4, factor 40, L0 4096, beta 32/1).
    inv, lo, hi = yarn_inv_freq(64, 10000.0, 40.0, 4096.0, 32.0, 1.0)
    assert (lo, hi) == (10, 23), (lo, hi)
    for i, want in [(0, 1.0), (10, 5.623413e-2), (11, 3.900693e-2), (12, 2.687936e-2), (22, 1.778279e-4),
                    (23, 3.333804e-5), (31, 3.333804e-6)]:
        _close(inv[i].item(), want, 1e-6, "V3 inv_freq[%d]" % i)
    # Section 11 T1: low 0, high 2; freq 0 kept, 1 half-blended, 2-3 divided by 4.
    inv, lo, hi = yarn_inv_freq(8, 10000.0, 4.0, 64.0, 32.0, 1.0)
    assert (lo, hi) == (0, 2), (lo, hi)
    f = [10000.0 ** (-2.0 * i / 8) for i in range(4)]
    for i, want in enumerate([f[0], 0.5 * f[1] + 0.5 * f[1] / 4, f[2] / 4, f[3] / 4]):
        _close(inv[i].item(), want, 1e-12, "T1 inv_freq[%d]" % i)
    # Sections 3.3 / 4.3.
    _close(192 ** -0.5 * get_mscale(40, 1.0) ** 2, 0.1352338, 1e-6, "V3 softmax scale")
    _close(192 ** -0.5 * get_mscale(40, 0.707) ** 2, 0.1147214, 1e-6, "V2-Lite softmax scale")
    _close(get_mscale(40, 1.0) ** 2, 1.873854, 1e-6, "V3 mscale^2")
    _close(get_mscale(40, 0.707) ** 2, 1.589626, 1e-6, "V2 mscale^2")
    _close(get_mscale(4, 1.0) ** 2, 1.296477, 1e-6, "T1 mscale^2")
    _close(get_mscale(4, 0.707) ** 2, 1.205628, 1e-6, "T1-v2 mscale^2")
    assert get_mscale(1.0, 5.0) == 1.0
    # Section 6.3 e4m3 decoding.
    t = FP8_E4M3_TABLE
    assert t[0x7E] == 448.0 and t[0xFE] == -448.0
    assert t[0x01] == 2.0 ** -9 and t[0x08] == 2.0 ** -6 and t[0x07] == 7 * 2.0 ** -9
    assert t[0x38] == 1.0 and t[0x00] == 0.0 and t[0x80] == 0.0 and math.copysign(1, t[0x80]) < 0
    assert math.isnan(t[0x7F]) and math.isnan(t[0xFF]) and int(np.isnan(t).sum()) == 2
    assert np.all(np.diff(t[:0x7F]) > 0)  # positive codes increase monotonically
    # RoPE: position 0 is the identity, rotation preserves norms, and q.k depends only on the
    # position difference (guards the pairing and sign convention).
    g = torch.Generator().manual_seed(0)
    inv64 = yarn_inv_freq(64, 10000.0, 40.0, 4096.0, 32.0, 1.0)[0]
    x = torch.randn(1, 64, generator=g, dtype=F64)
    y = torch.randn(1, 64, generator=g, dtype=F64)
    assert torch.equal(rope(x, torch.tensor([0]), inv64, 1.0), x)
    r = rope(x.repeat(3, 1), torch.tensor([5, 9, 1000]), inv64, 1.0)
    assert torch.allclose(r.norm(dim=-1), x.norm(), rtol=1e-12)
    d1 = (rope(x, torch.tensor([7]), inv64, 1.0) * rope(y, torch.tensor([3]), inv64, 1.0)).sum()
    d2 = (rope(x, torch.tensor([104]), inv64, 1.0) * rope(y, torch.tensor([100]), inv64, 1.0)).sum()
    _close(d1.item(), d2.item(), 1e-9, "RoPE relative position")
    # Pairing: x = e0 at position 1 with inv_freq (a, b) must rotate within (x0, x1) by a,
    # giving (cos a, sin a, 0, 0); NeoX half-split pairs would give (cos a, 0, sin a, 0).
    a_, b_ = 0.7, 0.2
    e = rope(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([1]), torch.tensor([a_, b_]), 1.0)[0].tolist()
    assert max(abs(u - v) for u, v in zip(e, [math.cos(a_), math.sin(a_), 0.0, 0.0])) < 1e-15, e
    e = rope(torch.tensor([[0.0, 0.0, 0.0, 1.0]]), torch.tensor([2]), torch.tensor([a_, b_]), 1.0)[0].tolist()
    assert max(abs(u - v) for u, v in zip(e, [0.0, 0.0, -math.sin(2 * b_), math.cos(2 * b_)])) < 1e-15, e
    print("selftest: pinned constants, fp8 table, RoPE OK")
    _selftest_models()
    print("selftest: all OK")


def _selftest_models():
    """End-to-end invariants on tiny checkpoints written by tools/make_tiny_checkpoint.py."""
    import tempfile
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_tiny_checkpoint as mk

    # e4m3 encoder of the writer vs this decoder: every finite code round-trips.
    codes = np.array([c for c in range(256) if not math.isnan(FP8_E4M3_TABLE[c])], dtype=np.uint8)
    back = mk.to_e4m3_bits(FP8_E4M3_TABLE[codes])
    assert np.array_equal(back[codes != 0x80], codes[codes != 0x80])

    ids = [0, 17, 42, 255, 3, 3, 128, 1, 99, 200, 7, 250]
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("tiny", "tiny-noq", "tiny-v2", "tiny-v2-greedy"):
            d = os.path.join(tmp, preset)
            mk.write_checkpoint(d, preset, seed=7)
            full, m = run(d, ids, check_absorbed=True, log=None)
            assert m.stats.absorbed_max_rel <= 1e-9
            # Causality: a prefix gives the same logits as the first rows of the full run.
            part, _ = run(d, ids[:5], log=None)
            assert torch.allclose(part, full[:5], rtol=0, atol=1e-12), preset
            assert full.abs().max() > 0.5 and torch.isfinite(full).all()
            if m.cfg.n_mtp:
                mt, _ = run(d, ids, mtp=True, log=None)
                assert mt.shape == (len(ids) - 1, m.cfg.V)
                mp, _ = run(d, ids[:5], mtp=True, log=None)
                assert torch.allclose(mp, mt[:4], rtol=0, atol=1e-12), preset
            print("selftest: %s: naive == absorbed (%.2g), causal prefix OK%s" % (
                preset, m.stats.absorbed_max_rel, ", MTP OK" if m.cfg.n_mtp else ""))

        # The MTP embedding / head must come from the layer-L copies when present.
        d = os.path.join(tmp, "distinct")
        mk.write_checkpoint(d, "tiny", seed=7, distinct_mtp_copies=True)
        a, _ = run(d, ids, mtp=True, log=None)
        b, _ = run(os.path.join(tmp, "tiny"), ids, mtp=True, log=None)
        assert not torch.allclose(a, b)

        # Storage formats: the same random values stored as f32 / f16 / bf16 / fp8 read back
        # with the expected error, fp8 including partial 128x128 edge blocks.
        ref = Checkpoint(os.path.join(tmp, "tiny"))
        for dt, tol in (("f16", 2e-3), ("bf16", 1e-2), ("fp8", 7e-2)):
            d = os.path.join(tmp, "tiny-" + dt)
            mk.write_checkpoint(d, "tiny", seed=7, dtype=dt)
            ck = Checkpoint(d)
            for name in ("model.layers.1.self_attn.kv_a_proj_with_mqa.weight", "model.embed_tokens.weight",
                         "model.layers.4.mlp.experts.3.down_proj.weight", "model.layers.2.mlp.gate.e_score_correction_bias"):
                x, y = ck.get(name), ref.get(name)
                err = ((x - y).abs().max() / y.abs().max()).item()
                assert err <= tol, (dt, name, err)
            full, _ = run(d, ids, log=None)
        # Dequantisation against a hand-made fp8 tensor with partial edge blocks (200 x 130 ->
        # scale [2, 2]), block mapping r//128, c//128.
        rng = np.random.default_rng(1)
        w = rng.normal(size=(200, 130))
        codes, scale = mk.quantize_fp8(w)
        assert scale.shape == (2, 2)
        path = os.path.join(tmp, "q.safetensors")
        mk.write_safetensors(path, [("x.weight", "F8_E4M3", [200, 130], codes.tobytes()),
                                    ("x.weight_scale_inv", "F32", [2, 2], scale.astype("<f4").tobytes())])
        got = Checkpoint.__new__(Checkpoint)
        got.block, st = (128, 128), SafetensorsFile(path)
        got.where = {n: st for n in st.info}
        deq = got.get("x.weight").numpy()
        for (r, c_) in [(0, 0), (127, 127), (128, 0), (0, 128), (199, 129), (150, 3)]:
            assert deq[r, c_] == FP8_E4M3_TABLE[codes[r, c_]] * np.float64(scale[r // 128, c_ // 128])
        assert np.abs(deq - w).max() <= 0.07 * np.abs(w).max()
        print("selftest: storage dtypes and fp8 block dequantisation OK")
        _selftest_grad(tmp, ids)


def _selftest_grad(tmp, ids):
    """Gradient mode: autograd against central finite differences in float64, loss parts
    against the logits mode, tying of the MTP embedding / head, the output file."""
    ids = ids[:8]  # main model on 7 tokens, MTP on 6
    for preset, W, A in (("tiny", 0.3, 0.5), ("tiny-v2", 0.0, 0.5), ("tiny-v2-greedy", 0.0, 0.5)):
        d = os.path.join(tmp, preset)
        m = Model(d, grad=True)
        c = m.cfg
        parts, logits, mtp_logits = grad_losses(m, ids, W, A)
        parts["loss"].backward()
        # The loss parts recomputed from the logits mode (python-float gate weights).
        ref_main, _ = run(d, ids[:-1], log=None)
        assert torch.allclose(logits.detach(), ref_main, rtol=0, atol=1e-12), preset
        ce = float(np.mean([torch.logsumexp(ref_main[t], 0).item() - ref_main[t, ids[t + 1]].item()
                            for t in range(len(ids) - 1)]))
        _close(parts["ce"].item(), ce, 1e-12, preset + " ce")
        if W > 0:
            ref_mtp, _ = run(d, ids[:-1], mtp=True, log=None)  # copies == main tensors here
            assert torch.allclose(mtp_logits.detach(), ref_mtp, rtol=0, atol=1e-12), preset
        assert parts["balance"].item() > 0
        _close(parts["loss"].item(), (parts["ce"] + W * parts["mtp"] + parts["balance"]).item(), 1e-15, "loss sum")
        selection = {l: [r[1] for r in recs] for l, recs in m.moe_log.items()}

        # Tensors to probe: globals, one dense and one MoE layer in full (router, shared
        # expert, one routed expert), the MTP block; each at its largest |gradient| entry and
        # at one fixed entry.
        L = c.L
        moe_l = next(l for l in range(L) if c.is_moe(l))
        dense_l = next((l for l in range(L) if not c.is_moe(l)), None)
        e0 = selection[moe_l][0][0]  # an expert that token 0 selected
        want = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
        for n in m.params:
            if n in want:
                continue
            if dense_l is not None and n.startswith("model.layers.%d." % dense_l):
                want.append(n)
            elif n.startswith("model.layers.%d." % moe_l) and (".experts." not in n or ".experts.%d." % e0 in n):
                want.append(n)
            elif W > 0 and n.startswith("model.layers.%d." % L) and (
                    ".experts." not in n or ".experts.%d.down_proj" % selection[L][0][0] in n):
                want.append(n)
        probes = []
        for n in want:
            g = m.params[n].grad
            assert g is not None, (preset, n)
            probes.append((n, tuple(int(i) for i in np.unravel_index(int(g.abs().argmax()), g.shape))))
            probes.append((n, tuple(0 for _ in g.shape)))
        # The embedding row of a token that is an MTP input and a main input (tied path).
        probes.append(("model.embed_tokens.weight", (ids[3], 1)))
        probes.append(("lm_head.weight", (ids[2], 2)))  # main target of t=1, MTP target of i=0
        if A > 0:  # the router row of an expert: selection-independent balance gradient
            probes.append(("model.layers.%d.mlp.gate.weight" % moe_l, (c.E - 1, 3)))

        eps, worst, big = 1e-5, 0.0, 0
        with torch.no_grad():
            for n, ix in probes:
                p = m.params[n]
                g = p.grad[ix].item()
                x0 = p[ix].item()
                p[ix] = x0 + eps
                lp = grad_losses(m, ids, W, A)[0]["loss"].item()
                sel_p = {l: [r[1] for r in recs] for l, recs in m.moe_log.items()}
                p[ix] = x0 - eps
                lm = grad_losses(m, ids, W, A)[0]["loss"].item()
                sel_m = {l: [r[1] for r in recs] for l, recs in m.moe_log.items()}
                p[ix] = x0
                assert sel_p == selection and sel_m == selection, (preset, n, ix, "routing flipped")
                fd = (lp - lm) / (2 * eps)
                err = abs(fd - g)
                if not err <= 1e-8 + 1e-6 * abs(g):
                    raise AssertionError("%s: d loss / d %s%s: autograd %.12g, finite difference %.12g" % (
                        preset, n, list(ix), g, fd))
                worst = max(worst, err / max(abs(g), 1e-8))
                big += abs(g) > 1e-4
        assert big >= len(probes) // 2, (preset, big, len(probes))
        print("selftest: %s grad (W=%g, A=%g): %d autograd entries == central differences (worst rel %.2g)" % (
            preset, W, A, len(probes), worst))

    # Tying: with distinct layer-L copies stored, gradient mode still uses the main embedding
    # and head (the copies get no entry), i.e. it equals the logits mode with the copies
    # replaced by the main tensors, and differs from the logits mode reading the copies.
    d = os.path.join(tmp, "distinct")
    m = Model(d, grad=True)
    L = m.cfg.L
    _, _, mt = grad_losses(m, ids, 0.3, 0.0)
    plain, _ = run(d, ids[:-1], mtp=True, log=None)
    mi = Model(d)
    alias = {"model.layers.%d.embed_tokens.weight" % L: "model.embed_tokens.weight",
             "model.layers.%d.shared_head.head.weight" % L: "lm_head.weight"}
    mi.w = lambda name, shape=None: mi.ck.get(alias.get(name, name), shape)
    tied = mi.forward_mtp(ids[:-1], mi.forward(ids[:-1])[1])
    assert torch.allclose(mt.detach(), tied, rtol=0, atol=1e-12)
    assert not torch.allclose(mt.detach(), plain)
    names = trainable_names(m)
    assert not set(alias) & set(names) and not set(alias) & set(m.params)
    assert not any("e_score_correction_bias" in n or "scale_inv" in n for n in names)

    # Output file: W = 0 leaves the MTP block without gradient, W > 0 reaches all of it;
    # the file reads back exactly (header padding, offsets, metadata).
    for W in (0.0, 0.3):
        vals, grads = run_grad(os.path.join(tmp, "tiny"), ids, W, 0.01, log=None)
        mtp_zero = [bool(np.all(g == 0)) for n, g in grads if n.startswith("model.layers.%d." % L) and ".experts." not in n]
        assert all(mtp_zero) if W == 0 else not any(mtp_zero), W
        assert not any(np.all(g == 0) for n, g in grads if ".layers." not in n)
        path = os.path.join(tmp, "g.safetensors")
        write_f32_safetensors(path, grads, {k: repr(v) for k, v in vals.items()})
        st = SafetensorsFile(path)
        with open(path, "rb") as f:
            (hn,) = struct.unpack("<Q", f.read(8))
            meta = json.loads(f.read(hn))["__metadata__"]
        assert hn % 8 == 0 and list(st.info) == [n for n, _ in grads]
        assert {k: float(v) for k, v in meta.items()} == vals
        for n, g in grads:
            assert np.array_equal(st.read(n)[0], g.astype(np.float32).astype(np.float64)), n
    print("selftest: grad mode: MTP tying, zero / non-zero MTP gradients, safetensors output OK")


# ==============================================================================================

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="HF model folder (config.json + safetensors)")
    ap.add_argument("--ids", help="comma-separated token ids")
    ap.add_argument("--out", help="output .npy (float32 [T, V], or [T-1, V] with --mtp)")
    ap.add_argument("--mtp", action="store_true", help="MTP head logits (section 5)")
    ap.add_argument("--check-absorbed", action="store_true", help="assert absorbed MLA == naive MLA to 1e-9")
    ap.add_argument("--grad", metavar="OUT.safetensors", help="gradient mode: loss JSON on stdout, F32 gradients to OUT")
    ap.add_argument("--mtp-weight", type=float, default=0.0, help="gradient mode: weight W of the MTP loss (default 0)")
    ap.add_argument("--balance-alpha", type=float, default=0.0, help="gradient mode: alpha of the balance loss (default 0)")
    ap.add_argument("--selftest", action="store_true", help="pinned constants and invariants, then exit")
    a = ap.parse_args(argv)
    if a.selftest:
        selftest()
        return 0
    if a.grad:
        if a.out or a.mtp or a.check_absorbed:
            ap.error("--grad does not combine with --out, --mtp or --check-absorbed")
        if not (a.model and a.ids):
            ap.error("--grad needs --model and --ids")
        if not (a.mtp_weight >= 0 and a.balance_alpha >= 0):
            ap.error("--mtp-weight and --balance-alpha must be >= 0")
        try:
            ids = [int(s) for s in a.ids.split(",") if s.strip() != ""]
            vals, grads = run_grad(a.model, ids, a.mtp_weight, a.balance_alpha)
            write_f32_safetensors(a.grad, grads, {k: repr(v) for k, v in vals.items()})
        except (RefError, ValueError, OSError) as e:
            print("reference.py: error: %s" % e, file=sys.stderr)
            return 2
        print(json.dumps(vals))
        return 0
    if a.mtp_weight or a.balance_alpha:
        ap.error("--mtp-weight / --balance-alpha only with --grad")
    if not (a.model and a.ids and a.out):
        ap.error("--model, --ids and --out are required (or --selftest)")
    try:
        ids = [int(s) for s in a.ids.split(",") if s.strip() != ""]
        out, _ = run(a.model, ids, mtp=a.mtp, check_absorbed=a.check_absorbed)
    except (RefError, ValueError, OSError) as e:
        print("reference.py: error: %s" % e, file=sys.stderr)
        return 2
    np.save(a.out, out.numpy().astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
