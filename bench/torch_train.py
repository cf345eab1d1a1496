#!/usr/bin/python3
"""PyTorch baseline for the training benchmark: the training step of our C trainer in eager
float32 PyTorch, written for speed (batched attention, one matmul per expert), timed.

    /usr/bin/python3 bench/torch_train.py --model DIR --batch B --seq-len T --steps N
        [--warmup 2] [--threads 2] [--mtp-weight 0.3] [--balance-alpha 1e-4] [--seed 0] [--lr 3e-4]

DIR is an HF-layout checkpoint (e.g. from `deepseek init --preset small --dtype f32 -o DIR`).
One step on a fixed random batch of B sequences of T+1 tokens:
    loss = CE(main, x_1..x_T) + mtp_weight * CE(MTP at i = 0..T-2, x_{i+2})
         + balance_alpha * sum over MoE layers of the sequence-wise balance loss (mean over seqs)
then backward, clip to norm 1, AdamW (0.9, 0.95; decay 0.1 on matrices only), and the
aux-loss-free bias update b += 0.001 * sign(mean_load - load) in every MoE layer.
Stdout: one JSON line with the timing; everything else goes to stderr.
Model math follows docs sections 3, 4, 5 and 8 and the routing of tools/reference.py.
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--balance-alpha", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-4)
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # OpenBLAS (pthread build) sizes its pool from the environment when it is loaded, and
    # torch.set_num_threads does not reach it: set it before torch is imported.
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    # Matmuls run on OpenBLAS's pthreads, elementwise ops on torch's OpenMP threads; with both
    # pools spin-waiting they fight over the same cores (measured 2-2.5x slower steps on 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    # glibc serves big blocks with fresh mmaps and returns them on free, so every step page-
    # faults its activations and optimizer temporaries in again (as much system as user time on
    # bench-100m). Keep freed memory in the heap instead: M_MMAP_THRESHOLD (-3), M_TRIM_THRESHOLD (-1).
    try:
        import ctypes
        _libc = ctypes.CDLL("libc.so.6")
        _libc.mallopt(-3, 1 << 30), _libc.mallopt(-1, 1 << 30)
    except (OSError, AttributeError):  # not glibc: just slower
        pass

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- checkpoint
def _e4m3_table():
    c = np.arange(256)
    e, m = (c >> 3) & 0xF, (c & 7) / 8.0
    v = np.where(e == 0, 2.0 ** -6 * m, 2.0 ** (e - 7.0) * (1.0 + m)) * np.where(c & 0x80, -1.0, 1.0)
    v[[0x7F, 0xFF]] = np.nan
    return v.astype(np.float32)


class Checkpoint:
    """Tensor name -> float32 torch tensor, from model.safetensors or index + shards."""
    NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8}

    def __init__(self, d, block=(128, 128)):
        idx = os.path.join(d, "model.safetensors.index.json")
        files = (sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx)
                 else ["model.safetensors"])
        self.where, self.block = {}, block
        for fn in files:
            path = os.path.join(d, fn)
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                hdr = json.loads(f.read(n))
            hdr.pop("__metadata__", None)
            data = np.memmap(path, np.uint8, "r", offset=8 + n)  # offsets are relative to here
            for name, t in hdr.items():
                self.where[name] = (data, t)

    def has(self, name):
        return name in self.where

    def raw(self, name):
        data, t = self.where[name]
        b, e = t["data_offsets"]
        return data[b:e].view(self.NP[t["dtype"]]).reshape(t["shape"]), t["dtype"]

    def get(self, name, shape):
        if name not in self.where:
            sys.exit("torch_train.py: missing tensor %s" % name)
        a, dt = self.raw(name)
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)  # bf16 = top half of an f32
        elif dt == "F8_E4M3":
            s, _ = self.raw(name + "_scale_inv")
            bo, bi = self.block
            a = _e4m3_table()[a] * np.repeat(np.repeat(s, bo, 0), bi, 1)[:a.shape[0], :a.shape[1]]
        a = torch.from_numpy(np.array(a, dtype=np.float32))  # copy: writable, owned, aligned
        if list(a.shape) != list(shape):
            sys.exit("torch_train.py: %s has shape %s, expected %s" % (name, list(a.shape), shape))
        return a


# ---------------------------------------------------------------------------- config
class Config:
    def __init__(self, d):
        self.V, self.D, self.L, self.H = d["vocab_size"], d["hidden_size"], d["num_hidden_layers"], d["num_attention_heads"]
        self.dn, self.dr, self.dv = d["qk_nope_head_dim"], d["qk_rope_head_dim"], d["v_head_dim"]
        self.dq, self.dc, self.I = d.get("q_lora_rank") or 0, d["kv_lora_rank"], d["intermediate_size"]
        self.E, self.MI, self.S = d.get("n_routed_experts"), d.get("moe_intermediate_size"), d.get("n_shared_experts") or 0
        self.K, self.G, self.TG = d.get("num_experts_per_tok"), d.get("n_group") or 1, d.get("topk_group") or 1
        self.rsf = float(d.get("routed_scaling_factor", 1.0))
        self.sigmoid = d.get("scoring_func", "softmax") == "sigmoid"
        self.topk_method = {"gready": "greedy"}.get(d.get("topk_method", "greedy"), d.get("topk_method", "greedy"))
        self.norm_topk = bool(d.get("norm_topk_prob", False))
        self.first_dense, self.moe_freq = d.get("first_k_dense_replace", 0), d.get("moe_layer_freq", 1)
        self.eps = float(d.get("rms_norm_eps", 1e-6))
        self.n_mtp = d.get("num_nextn_predict_layers") or 0
        # RoPE: plain, or YaRN (section 4) exactly as tools/reference.py (computed in float64).
        rs = d.get("rope_scaling") or d.get("rope_parameters")
        theta = float(d.get("rope_theta", (d.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
        kind = None if rs is None else (rs.get("type") or rs.get("rope_type"))
        freq = [theta ** (-2.0 * i / self.dr) for i in range(self.dr // 2)]
        self.scale, self.rope_mul = (self.dn + self.dr) ** -0.5, 1.0
        if kind == "yarn":
            f, L0 = float(rs["factor"]), float(rs["original_max_position_embeddings"])
            mscale = lambda m: 1.0 if f <= 1 else 0.1 * m * math.log(f) + 1.0
            corr = lambda r: self.dr * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(theta))
            lo = max(math.floor(corr(float(rs.get("beta_fast", 32)))), 0)
            hi = min(math.ceil(corr(float(rs.get("beta_slow", 1)))), self.dr - 1)
            hi = hi + 0.001 if lo == hi else hi
            keep = [1.0 - min(max((i - lo) / (hi - lo), 0.0), 1.0) for i in range(self.dr // 2)]
            freq = [(fr / f) * (1.0 - k) + fr * k for fr, k in zip(freq, keep)]
            msa = float(rs["mscale_all_dim"])
            self.scale *= mscale(msa) ** 2
            self.rope_mul = mscale(float(rs.get("mscale", 1.0))) / mscale(msa)
        elif kind not in (None, "default"):
            sys.exit("torch_train.py: rope_scaling type %r not supported" % kind)
        self.inv_freq = torch.tensor(freq, dtype=torch.float64)

    def is_moe(self, l):
        return self.E is not None and l >= self.first_dense and l % self.moe_freq == 0


# ---------------------------------------------------------------------------- model
def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """Rotate CONSECUTIVE pairs (2i, 2i+1) of the last dim; cos/sin broadcast to [..., dr/2]."""
    x = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = x[..., 0], x[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)


class MLA(nn.Module):
    """Naive (materialised K/V) form: fewest FLOPs for full-sequence training (section 3.4)."""

    def __init__(self, c, ck, p):
        super().__init__()
        self.c, P = c, lambda n, *s: nn.Parameter(ck.get(p + n, list(s)))
        H, dqk = c.H, c.dn + c.dr
        if c.dq:
            self.q_a, self.q_a_norm = P("q_a_proj.weight", c.dq, c.D), P("q_a_layernorm.weight", c.dq)
            self.q_b = P("q_b_proj.weight", H * dqk, c.dq)
        else:
            self.q_proj = P("q_proj.weight", H * dqk, c.D)
        self.kv_a = P("kv_a_proj_with_mqa.weight", c.dc + c.dr, c.D)
        self.kv_a_norm = P("kv_a_layernorm.weight", c.dc)
        self.kv_b = P("kv_b_proj.weight", H * (c.dn + c.dv), c.dc)
        self.o = P("o_proj.weight", c.D, H * c.dv)

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        H, dn, dr, dv = c.H, c.dn, c.dr, c.dv
        q = F.linear(rms(F.linear(x, self.q_a), self.q_a_norm, c.eps), self.q_b) if c.dq else F.linear(x, self.q_proj)
        q = q.view(B, T, H, dn + dr)
        q = torch.cat((q[..., :dn], rope(q[..., dn:], cos[:, None], sin[:, None])), -1)
        kv = F.linear(x, self.kv_a)
        cn = rms(kv[..., :c.dc], self.kv_a_norm, c.eps)  # latent only: k_pe is never normalised
        k_pe = rope(kv[..., c.dc:], cos, sin)             # [B, T, dr], shared by all heads
        kvb = F.linear(cn, self.kv_b).view(B, T, H, dn + dv)
        k = torch.cat((kvb[..., :dn], k_pe[:, :, None].expand(B, T, H, dr)), -1)
        heads = lambda t: t.transpose(1, 2).reshape(B * H, T, t.shape[-1])
        # One batched GEMM for all heads; baddbmm fuses the scale and the additive causal mask.
        att = torch.baddbmm(mask, heads(q), heads(k).transpose(1, 2), alpha=c.scale).softmax(-1)
        o = torch.bmm(att, heads(kvb[..., dn:])).view(B, H, T, dv).transpose(1, 2).reshape(B, T, H * dv)
        return F.linear(o, self.o)


class SwiGLU(nn.Module):
    """gate_proj and up_proj stored stacked as one [2W, D] matrix: one GEMM instead of two."""

    def __init__(self, ck, p, W, D):
        super().__init__()
        self.gu = nn.Parameter(torch.cat((ck.get(p + "gate_proj.weight", [W, D]), ck.get(p + "up_proj.weight", [W, D]))))
        self.down = nn.Parameter(ck.get(p + "down_proj.weight", [D, W]))

    def forward(self, x):
        g, u = F.linear(x, self.gu).chunk(2, -1)
        return F.linear(F.silu(g) * u, self.down)


class MoE(nn.Module):
    def __init__(self, c, ck, p):
        super().__init__()
        self.c, E, MI, D = c, c.E, c.MI, c.D
        self.gate = nn.Parameter(ck.get(p + "gate.weight", [E, D]))
        b = p + "gate.e_score_correction_bias"
        # Not a parameter: moved by the sign rule after each step, never by gradients.
        self.register_buffer("bias", ck.get(b, [E]) if ck.has(b) else torch.zeros(E))
        ex = lambda n, *s: torch.stack([ck.get(p + "experts.%d.%s.weight" % (e, n), list(s)) for e in range(E)])
        self.gu = nn.Parameter(torch.cat((ex("gate_proj", MI, D), ex("up_proj", MI, D)), 1))  # [E, 2MI, D]
        self.down = nn.Parameter(ex("down_proj", D, MI))                                     # [E, D, MI]
        self.shared = SwiGLU(ck, p + "shared_experts.", c.S * MI, D) if c.S else None
        self.load = self.balance = None  # set by forward: expert loads, balance loss

    @torch.no_grad()
    def select(self, s):
        """Expert ids [N, K]: bias and group limit as tools/reference.py (dropped groups -> -inf)."""
        c, N = self.c, s.shape[0]
        sb = s + self.bias if c.topk_method == "noaux_tc" else s
        if c.G > 1 and c.topk_method != "greedy":
            g = sb.view(N, c.G, c.E // c.G)
            gscore = g.topk(min(2, c.E // c.G), -1).values.sum(-1) if c.topk_method == "noaux_tc" else g.amax(-1)
            drop = torch.ones(N, c.G, dtype=torch.bool).scatter_(1, gscore.topk(c.TG, -1).indices, False)
            sb = g.masked_fill(drop[..., None], float("-inf")).view(N, c.E)
        return sb.topk(c.K, -1).indices

    def forward(self, x):
        c = self.c
        B, T, D = x.shape
        xf = x.reshape(B * T, D)
        logits = F.linear(xf, self.gate)
        s = torch.sigmoid(logits) if c.sigmoid else logits.softmax(-1)
        idx = self.select(s.detach())                     # [N, K]
        w = s.gather(1, idx)                              # unbiased scores carry the gradient
        if c.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        w = w * c.rsf
        # Sort the N*K (token, slot) pairs by expert so each expert sees one contiguous slab.
        flat = idx.flatten()
        order = flat.argsort()
        load = torch.bincount(flat, minlength=c.E)
        tok = order // c.K
        xs = xf.index_select(0, tok).split(load.tolist())
        # unbind once (its backward is a single stack), not gu[e] per expert (E full-size zero grads).
        gus, downs = self.gu.unbind(0), self.down.unbind(0)
        outs = []
        for e in range(c.E):
            if xs[e].shape[0]:
                g, u = F.linear(xs[e], gus[e]).chunk(2, -1)
                outs.append(F.linear(F.silu(g) * u, downs[e]))
        ys = torch.cat(outs) * w.flatten().index_select(0, order)[:, None]
        y = torch.zeros_like(xf).index_add_(0, tok, ys)
        if self.shared is not None:
            y = y + self.shared(xf)                       # unweighted
        # Sequence-wise balance loss (section 8): f from the selected experts (constant),
        # P from scores normalised over all experts; mean over the B sequences.
        cnt = torch.zeros(B, c.E).scatter_add_(1, idx.view(B, T * c.K), torch.ones(B, T * c.K))
        f = cnt * (c.E / (c.K * T))
        P = (s / s.sum(-1, keepdim=True)).view(B, T, c.E).mean(1)
        self.balance = (f * P).sum(-1).mean()
        self.load = load
        return y.view(B, T, D)


class Block(nn.Module):
    def __init__(self, c, ck, l):
        super().__init__()
        p = "model.layers.%d." % l
        self.c = c
        self.ln1 = nn.Parameter(ck.get(p + "input_layernorm.weight", [c.D]))
        self.ln2 = nn.Parameter(ck.get(p + "post_attention_layernorm.weight", [c.D]))
        self.attn = MLA(c, ck, p + "self_attn.")
        self.ffn = MoE(c, ck, p + "mlp.") if c.is_moe(l) else SwiGLU(ck, p + "mlp.", c.I, c.D)

    def forward(self, h, cos, sin, mask):
        h = h + self.attn(rms(h, self.ln1, self.c.eps), cos, sin, mask)
        return h + self.ffn(rms(h, self.ln2, self.c.eps))


class DeepSeek(nn.Module):
    def __init__(self, c, ck, max_T):
        super().__init__()
        self.c = c
        self.emb = nn.Parameter(ck.get("model.embed_tokens.weight", [c.V, c.D]))
        self.layers = nn.ModuleList(Block(c, ck, l) for l in range(c.L))
        self.norm = nn.Parameter(ck.get("model.norm.weight", [c.D]))
        self.head = nn.Parameter(ck.get("lm_head.weight", [c.V, c.D]))
        if c.n_mtp:
            # Depth 1 only. The layer-L embed_tokens / shared_head.head copies are ignored: the
            # MTP module uses (and trains) the main embedding and lm_head (section 5).
            p = "model.layers.%d." % c.L
            self.enorm, self.hnorm = (nn.Parameter(ck.get(p + n, [c.D])) for n in ("enorm.weight", "hnorm.weight"))
            self.eh_proj = nn.Parameter(ck.get(p + "eh_proj.weight", [c.D, 2 * c.D]))
            self.mtp_block = Block(c, ck, c.L)
            self.mtp_norm = nn.Parameter(ck.get(p + "shared_head.norm.weight", [c.D]))
        ang = torch.arange(max_T, dtype=torch.float64)[:, None] * c.inv_freq[None]
        self.register_buffer("cos", (torch.cos(ang) * c.rope_mul).float())
        self.register_buffer("sin", (torch.sin(ang) * c.rope_mul).float())
        self.register_buffer("mask", torch.full((max_T, max_T), float("-inf")).triu(1))

    def moe_layers(self):
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(self, tokens, mtp_weight, alpha):
        """tokens [B, T+1] -> (total loss, main CE, MTP CE)."""
        c, T = self.c, tokens.shape[1] - 1
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        for m in self.moe_layers():
            m.load = m.balance = None  # the MTP block does not run when T < 2
        cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
        h = F.embedding(inp, self.emb)
        for blk in self.layers:
            h = blk(h, cos, sin, mask)
        hf = rms(h, self.norm, c.eps)
        ce = F.cross_entropy(F.linear(hf, self.head).view(-1, c.V), tgt.reshape(-1))
        loss, mtp = ce, torch.zeros(())
        if c.n_mtp and T >= 2:
            # MTP position i = 0..T-2: [enorm(Emb(x_{i+1})); hnorm(h_i)] -> predicts x_{i+2}.
            e = rms(F.embedding(inp[:, 1:], self.emb), self.enorm, c.eps)
            u = F.linear(torch.cat((e, rms(hf[:, :-1], self.hnorm, c.eps)), -1), self.eh_proj)
            u = self.mtp_block(u, cos[:T - 1], sin[:T - 1], mask[:T - 1, :T - 1])
            mtp = F.cross_entropy(F.linear(rms(u, self.mtp_norm, c.eps), self.head).view(-1, c.V), tgt[:, 1:].reshape(-1))
            loss = loss + mtp_weight * mtp
        if alpha:
            loss = loss + alpha * sum(m.balance for m in self.moe_layers() if m.load is not None)
        return loss, ce, mtp


# ---------------------------------------------------------------------------- training
def main(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(os.path.join(a.model, "config.json")) as f:
        raw = json.load(f)
    c = Config(raw)
    qc = raw.get("quantization_config") or {}
    t0 = time.perf_counter()
    model = DeepSeek(c, Checkpoint(a.model, tuple(qc.get("weight_block_size", (128, 128)))), a.seq_len)
    n_par = sum(p.numel() for p in model.parameters())
    log("torch_train: %s: %.2fM parameters (MTP copies of embed/head tied), loaded in %.1fs; torch %s, %d threads"
        % (a.model, n_par / 1e6, time.perf_counter() - t0, torch.__version__, a.threads))
    moes = model.moe_layers()

    decay = [p for p in model.parameters() if p.dim() >= 2]   # matrices (stacked experts too)
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # RMSNorm weights
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), foreach=True)
    g = torch.Generator().manual_seed(a.seed)
    tokens = torch.randint(0, c.V, (a.batch, a.seq_len + 1), generator=g)

    def step():
        loss, ce, mtp = model(tokens, a.mtp_weight, a.balance_alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for m in moes:
                if m.c.topk_method != "noaux_tc" or m.load is None:
                    continue  # only noaux_tc selection reads the bias
                load = m.load.float()
                m.bias += 0.001 * torch.sign(load.mean() - load)
        return loss.item(), ce.item(), mtp.item()

    losses = []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        ts = time.perf_counter()
        loss, ce, mtp = step()
        losses.append(loss)
        log("step %3d%s loss %.4f (ce %.4f, mtp %.4f) %.3fs" % (
            i, " (warmup)" if i < a.warmup else "", loss, ce, mtp, time.perf_counter() - ts))
    dt = (time.perf_counter() - t0) / max(a.steps, 1)
    tps = a.batch * a.seq_len
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
        "seq_len": a.seq_len, "tokens_per_step": tps, "steps": a.steps, "sec_per_step": round(dt, 6),
        "tok_s": round(tps / dt, 2) if a.steps else 0.0, "loss_first": losses[0], "loss_last": losses[-1],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
