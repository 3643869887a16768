#!/usr/bin/python3
"""ref_forward.py - an independent float64 forward pass, to make golden logits.

Written from the published architectures (Llama, Qwen 2, Qwen 3), not from
attnd's C code, and used only to produce golden files for families the
llama.cpp snapshot at hand cannot run (Qwen 3). Checked first against
llama.cpp on llama and qwen2 files (tests/ref/README.md).

Reads a GGUF file of F32/F16 tensors with its own small reader, feeds the
token ids teacher-forced (causal attention over all of them) and writes, per
position, every STRIDE-th logit as float32 little-endian; prints the json
fields vocab, positions and argmax (over the full vocabulary).

usage: ref_forward.py MODEL.gguf STRIDE OUT.f32 ID...
Needs only python3-numpy.
"""
import json
import struct
import sys

import numpy as np

# GGUF metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
TENSOR_F32, TENSOR_F16 = 0, 1


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.o:self.o + n]
        self.o += n
        return s.decode("utf-8", "replace")

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def read_header(data):
    r = Reader(data)
    assert data[:4] == b"GGUF", "not a GGUF file"
    r.o = 4
    version = r.take("<I")
    assert version == 3, f"GGUF version {version}"
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    return r, n_tensors, meta


def load_gguf_meta(path):
    """The metadata of a GGUF file (tensors not read)."""
    return read_header(open(path, "rb").read())[2]


def load_gguf(path):
    data = open(path, "rb").read()
    r, n_tensors, meta = read_header(data)
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", 32)
    base = (r.o + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        count = int(np.prod(ne))
        if typ == TENSOR_F32:
            a = np.frombuffer(data, "<f4", count, base + off)
        elif typ == TENSOR_F16:
            a = np.frombuffer(data, "<f2", count, base + off)
        else:
            raise SystemExit(f"{name}: tensor type {typ} (only F32 and F16 here)")
        # GGUF ne[0] is the fastest-varying axis: a matrix [n_in, n_out] is
        # n_out rows of n_in, i.e. numpy shape (n_out, n_in).
        tensors[name] = a.astype(np.float64).reshape(list(reversed(ne)))
    return meta, tensors


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate(x, cos, sin, style):
    """x: (T, heads, hd); cos/sin: (T, n_rot/2). Rotates the first n_rot dims."""
    half = cos.shape[1]
    out = x.copy()
    c, s = cos[:, None, :], sin[:, None, :]
    if style == "neox":  # pairs (j, j + n_rot/2)
        a, b = x[..., :half], x[..., half:2 * half]
        out[..., :half] = a * c - b * s
        out[..., half:2 * half] = a * s + b * c
    else:  # adjacent pairs (2j, 2j + 1)
        a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
        out[..., 0:2 * half:2] = a * c - b * s
        out[..., 1:2 * half:2] = a * s + b * c
    return out


def forward(meta, t, ids, probs=None):
    """Logits for IDS; with PROBS a dict, also PROBS[(layer, head)] = the
    (T, T) attention probabilities."""
    arch = meta["general.architecture"]
    if arch not in ("llama", "qwen2", "qwen3"):
        raise SystemExit(f"architecture {arch} not in this reference")
    k = lambda name, default=None: meta.get(f"{arch}.{name}", default)
    n_embd, n_head = k("embedding_length"), k("attention.head_count")
    n_kv = k("attention.head_count_kv", n_head)
    hd = k("attention.key_length", n_embd // n_head)
    n_rot = k("rope.dimension_count", hd)
    base = k("rope.freq_base", 10000.0)
    eps = k("attention.layer_norm_rms_epsilon", 1e-5)
    scale = k("rope.scaling.factor", 1.0) if k("rope.scaling.type") == "linear" else 1.0
    style = "norm" if arch == "llama" else "neox"

    T = len(ids)
    pos = np.arange(T, dtype=np.float64) / scale
    inv = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    if "rope_freqs.weight" in t:
        inv = inv / t["rope_freqs.weight"]
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    mask = np.triu(np.full((T, T), -np.inf), 1)

    x = t["token_embd.weight"][ids]
    for l in range(k("block_count")):
        p = lambda s: t.get(f"blk.{l}.{s}")
        h = rmsnorm(x, p("attn_norm.weight"), eps)
        q, kk, v = h @ p("attn_q.weight").T, h @ p("attn_k.weight").T, h @ p("attn_v.weight").T
        if p("attn_q.bias") is not None:
            q, kk, v = q + p("attn_q.bias"), kk + p("attn_k.bias"), v + p("attn_v.bias")
        q, kk, v = q.reshape(T, n_head, hd), kk.reshape(T, n_kv, hd), v.reshape(T, n_kv, hd)
        if p("attn_q_norm.weight") is not None:  # Qwen 3: per head, before rotation
            q = rmsnorm(q, p("attn_q_norm.weight"), eps)
            kk = rmsnorm(kk, p("attn_k_norm.weight"), eps)
        q, kk = rotate(q, cos, sin, style), rotate(kk, cos, sin, style)
        group = n_head // n_kv
        att = np.empty((T, n_head, hd))
        for hh in range(n_head):
            kv = hh // group
            s = q[:, hh, :] @ kk[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s = s / s.sum(axis=1, keepdims=True)
            if probs is not None:
                probs[(l, hh)] = s
            att[:, hh, :] = s @ v[:, kv, :]
        x = x + att.reshape(T, n_head * hd) @ p("attn_output.weight").T
        h = rmsnorm(x, p("ffn_norm.weight"), eps)
        g, u = h @ p("ffn_gate.weight").T, h @ p("ffn_up.weight").T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ p("ffn_down.weight").T
    x = rmsnorm(x, t["output_norm.weight"], eps)
    out = t.get("output.weight", t["token_embd.weight"])  # tied when absent
    return x @ out.T


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    meta, t = load_gguf(sys.argv[1])
    stride, ids = int(sys.argv[2]), [int(a) for a in sys.argv[4:]]
    logits = forward(meta, t, ids)
    logits[:, ::stride].astype("<f4").tofile(sys.argv[3])
    print(json.dumps({"vocab": logits.shape[1], "positions": len(ids),
                      "argmax": [int(a) for a in logits.argmax(axis=1)]}))


if __name__ == "__main__":
    main()
