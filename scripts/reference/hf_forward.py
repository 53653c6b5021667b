#!/usr/bin/env python3
"""Independent float64 NumPy re-implementation of transformers' Qwen2/Llama forward pass.

Written from modeling_qwen2.py / modeling_llama.py (RMSNorm in fp32 semantics, rotate-half RoPE,
llama3 rope scaling, GQA via repeat_kv, SwiGLU, tied or separate lm_head). It shares no code with
the Java decoder; the test fixtures under trainer/src/test/resources/fixtures were produced by it:

    python3 scripts/reference/hf_forward.py MODEL_DIR IDS_JSON > expected.json

IDS_JSON is a JSON list of token-id lists; output is {"logits": [[[...]...]...]} per sequence.
"""
import json, math, os, struct, sys
import numpy as np


def load_tensors(d):
    files = []
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        raw = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, t in header.items():
            if name == "__metadata__":
                continue
            b, e = t["data_offsets"]
            buf = raw[base + b: base + e]
            if t["dtype"] == "BF16":
                a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            elif t["dtype"] == "F16":
                a = np.frombuffer(buf, dtype="<f2")
            else:
                a = np.frombuffer(buf, dtype="<f4")
            out[name] = a.astype(np.float64).reshape(t["shape"])
    return out


def inv_freq(cfg, dim):
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (np.arange(0, dim, 2) / dim))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        scaled = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv


def forward(d, ids):
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = load_tensors(d)
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nk = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    T = len(ids)

    def rms(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        if name + ".bias" in W:
            y = y + W[name + ".bias"]
        return y

    freqs = np.arange(T)[:, None] * inv_freq(cfg, hd)[None, :]
    emb = np.concatenate([freqs, freqs], -1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rope(x):  # x [heads, T, hd]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    x = W["model.embed_tokens.weight"][ids]
    causal = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").reshape(T, nh, hd).transpose(1, 0, 2)
        k = lin(h, p + "self_attn.k_proj").reshape(T, nk, hd).transpose(1, 0, 2)
        v = lin(h, p + "self_attn.v_proj").reshape(T, nk, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, nh // nk, axis=0)  # repeat_kv
        v = np.repeat(v, nh // nk, axis=0)
        s = q @ k.transpose(0, 2, 1) * hd ** -0.5 + causal
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + lin(a, p + "self_attn.o_proj")
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(g / (1 + np.exp(-g)) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


if __name__ == "__main__":
    d, seqs = sys.argv[1], json.load(open(sys.argv[2]))
    print(json.dumps({"ids": seqs, "logits": [forward(d, s).astype(np.float32).tolist() for s in seqs]}))
