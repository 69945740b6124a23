"""HF checkpoint -> GGUF conversion on tiny random Gemma 4 Unified checkpoints (three configs
and their drafters) for every output type: each tensor dequantized from the GGUF equals the
source (after the documented transformation) within its type's tolerance, and the metadata
round-trips to the source config and tokenizer."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

import unigemma
from unigemma.convert import ConversionError, convert
from unigemma.convert.safetensors_io import Checkpoint

OUTTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q6_k"]
CONFIGS = ["default", "kv_shared", "alt_layout"]

# GGUF name -> HF name (per layer: blk.N.x -> ...layers.N.y) for the checks below
LAYER = {
    "attn_norm": "input_layernorm.weight", "attn_q": "self_attn.q_proj.weight", "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight", "attn_output": "self_attn.o_proj.weight",
    "attn_q_norm": "self_attn.q_norm.weight", "attn_k_norm": "self_attn.k_norm.weight",
    "post_attention_norm": "post_attention_layernorm.weight", "ffn_norm": "pre_feedforward_layernorm.weight",
    "ffn_gate": "mlp.gate_proj.weight", "ffn_up": "mlp.up_proj.weight", "ffn_down": "mlp.down_proj.weight",
    "post_ffw_norm": "post_feedforward_layernorm.weight", "layer_output_scale": "layer_scalar",
}


def hf_source(ck: Checkpoint, name: str, prefix: str, cfg: dict) -> np.ndarray | None:
    """The expected float32 values of GGUF tensor `name`, from the HF tensors, applying the
    reference's transformations (§2.3, §3.3) written out independently of the converter."""
    def t(n):
        return ck.tensors[n].to_float32()
    if name.startswith("blk."):
        _, i, short, _w = name.split(".")
        return t(f"{prefix}layers.{i}.{LAYER[short]}")
    vc = cfg.get("vision_config") or {}
    p = 48
    if name == "token_embd.weight":
        return t(prefix + "embed_tokens.weight")
    if name == "output_norm.weight":
        return t(prefix + "norm.weight")
    if name == "rope_freqs.weight":
        return None
    if name in ("v.patch_norm.1.weight", "v.patch_norm.1.bias", "v.patch_embd.weight"):
        src = {"v.patch_norm.1.weight": "patch_ln1.weight", "v.patch_norm.1.bias": "patch_ln1.bias",
               "v.patch_embd.weight": "patch_dense.weight"}[name]
        x = t("model.vision_embedder." + src)
        # HWC (r, c, ch) -> CHW (ch, r, c) on the last axis
        lead = x.shape[:-1]
        return x.reshape(*lead, p, p, 3).transpose(*range(len(lead)), len(lead) + 2, len(lead), len(lead) + 1).reshape(*lead, -1)
    simple = {"v.patch_embd.bias": "model.vision_embedder.patch_dense.bias",
              "v.patch_norm.2.weight": "model.vision_embedder.patch_ln2.weight",
              "v.patch_norm.2.bias": "model.vision_embedder.patch_ln2.bias",
              "v.patch_norm.3.weight": "model.vision_embedder.pos_norm.weight",
              "v.patch_norm.3.bias": "model.vision_embedder.pos_norm.bias",
              "mm.input_projection.weight": "model.embed_vision.embedding_projection.weight",
              "mm.a.input_projection.weight": "model.embed_audio.embedding_projection.weight",
              "nextn.pre_projection.weight": "pre_projection.weight",
              "nextn.post_projection.weight": "post_projection.weight",
              "masked_embd_centroids.weight": "masked_embedding.centroids.weight"}
    if name in simple:
        return t(simple[name])
    if name == "v.position_embd.weight":
        return np.stack([t("model.vision_embedder.pos_embedding")[:, 0], t("model.vision_embedder.pos_embedding")[:, 1]])
    if name == "masked_embd_ordering":
        return ck.tensors["masked_embedding.token_ordering"].raw().astype(np.float64)
    raise AssertionError(f"unexpected tensor {name}")


def check_values(name: str, ttype: str, got: np.ndarray, want: np.ndarray):
    """Per-type tolerance against the source values (float64 math)."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    assert g.shape == w.shape, name
    if ttype in ("F32", "I32"):
        np.testing.assert_array_equal(g, w, err_msg=name)
        return
    if ttype == "F16":
        np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32), err_msg=name)
        return
    if ttype == "BF16":
        assert np.all(np.abs(g - w) <= np.abs(w) * 2.0**-8 + 1e-30), name
        return
    block = {"Q8_0": 32, "Q4_0": 32, "Q5_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}[ttype]
    # max error relative to the block's largest magnitude, with room for the f16 scale
    # and (for llama-quantize parity) the f16 rounding of the source
    frac = {"Q8_0": 0.6 / 127, "Q4_0": 1.02 / 8, "Q5_0": 1.02 / 16, "Q4_K": 0.2, "Q5_K": 0.1, "Q6_K": 0.05}[ttype]
    gb, wb = g.reshape(-1, block), w.reshape(-1, block)
    amax = np.abs(wb).max(axis=1, keepdims=True)
    err = np.abs(gb - wb)
    frac += 2.0**-10  # the f16 rounding of the source that llama-quantize parity implies
    assert np.all(err <= frac * amax + 1e-30), f"{name} {ttype}: worst {float((err / (amax + 1e-30)).max()):.4f} of block max"
    rel_rmse = math.sqrt(float((err**2).mean()) / max(float((wb**2).mean()), 1e-30))
    assert rel_rmse < {"Q8_0": 0.01, "Q4_0": 0.12, "Q5_0": 0.06, "Q4_K": 0.1, "Q5_K": 0.05, "Q6_K": 0.025}[ttype], (name, rel_rmse)


@pytest.fixture(scope="module")
def converted(hf_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    cache = {}

    def get(cfg: str, outtype: str):
        key = (cfg, outtype)
        if key not in cache:
            cache[key] = convert(hf_ckpt(cfg), outtype, out / f"{cfg}-{outtype}", assistant_dir=hf_ckpt(f"assistant_{cfg}"),
                                 progress=False)
        return cache[key]

    return get


def verify_file(path: Path, ck_dir: Path, prefix: str):
    cfg = json.loads((ck_dir / "config.json").read_text())
    f = unigemma.open_gguf(path)
    ck = Checkpoint(ck_dir)
    try:
        for t in f.tensors:
            want = hf_source(ck, t.name, prefix, cfg)
            if want is None:
                continue
            got = f.tensor_float(t.name) if t.type != "I32" else np.frombuffer(f.tensor_bytes(t.name), np.int32)
            if t.name == "token_embd.weight":
                want = want[: t.shape[0]]
            check_values(t.name, t.type, got.reshape(want.shape) if got.size == want.size else got, want)
    finally:
        ck.close()
    return f


# Every output type on the default layout; the other layouts (k_eq_v + KV sharing + double-wide
# MLP; alternate attention layout) with a float, a legacy and a K-quant type: the tensor naming and
# shape logic depends on the layout, the quantization path on the type only.
EVERY_TENSOR_CASES = ([("default", t) for t in OUTTYPES]
                      + [(c, t) for c in CONFIGS[1:] for t in ("f16", "q8_0", "q4_k_m")])
# 7-26 s per case: the matrix is the slow tier; default/q8_0 (a quantized type, ~7 s) stays quick
QUICK_CASE = ("default", "q8_0")
EVERY_TENSOR_PARAMS = [pytest.param(*c, marks=() if c == QUICK_CASE else pytest.mark.slow) for c in EVERY_TENSOR_CASES]


@pytest.mark.parametrize("cfg, outtype", EVERY_TENSOR_PARAMS)
def test_every_tensor_matches_source(converted, hf_ckpt, cfg, outtype):
    res = converted(cfg, outtype)
    verify_file(res.text, hf_ckpt(cfg), "model.language_model.")
    verify_file(res.mmproj, hf_ckpt(cfg), "")
    verify_file(res.assistant, hf_ckpt(f"assistant_{cfg}"), "model.")
    verify_file(res.centroids, hf_ckpt(f"assistant_{cfg}"), "model.")


def test_k_quant_bytes_decode_identically_in_gguf_package(converted):
    """Our K-quant bytes decode to the same values in the `gguf` package's reference decoder."""
    res = converted("default", "q4_k_m")
    f = unigemma.open_gguf(res.text)
    seen = set()
    for t in f.tensors:
        if t.type in ("Q4_K", "Q6_K", "Q5_K", "Q4_0", "Q8_0", "Q5_0") and t.type not in seen:
            seen.add(t.type)
            ref = gguf.quants.dequantize(np.asarray(f.tensor_bytes(t.name)).reshape(t.shape[0], -1),
                                         gguf.GGMLQuantizationType[t.type])
            np.testing.assert_array_equal(f.tensor_float(t.name), ref.reshape(t.shape))
    assert {"Q4_K", "Q6_K"} <= seen or {"Q5_0", "Q8_0"} <= seen


@pytest.mark.parametrize("cfg", CONFIGS)
def test_metadata_round_trips(converted, hf_ckpt, cfg):
    d = hf_ckpt(cfg)
    config = json.loads((d / "config.json").read_text())
    tc = config["text_config"]
    res = converted(cfg, "f16")
    f = unigemma.open_gguf(res.text)
    a = "gemma4."
    L = tc["num_hidden_layers"]
    is_swa = [t == "sliding_attention" for t in tc["layer_types"]]
    full = next(i for i in range(L) if not is_swa[i])
    plc = tc.get("per_layer_config", {})
    hd_f = plc[str(full)]["head_dim"]
    assert f["general.architecture"] == "gemma4"
    assert f[a + "block_count"] == L
    assert f[a + "embedding_length"] == tc["hidden_size"]
    assert f[a + "attention.head_count"] == tc["num_attention_heads"]
    assert f[a + "attention.key_length"] == f[a + "attention.value_length"] == hd_f
    assert f[a + "attention.key_length_swa"] == f[a + "attention.value_length_swa"] == tc["head_dim"]
    assert f[a + "attention.sliding_window"] == tc["sliding_window"]
    assert f[a + "attention.sliding_window_pattern"].tolist() == is_swa
    assert f[a + "attention.shared_kv_layers"] == tc.get("num_kv_shared_layers", 0)
    assert f[a + "attention.layer_norm_rms_epsilon"] == pytest.approx(tc["rms_norm_eps"], rel=1e-6)
    assert f[a + "context_length"] == tc["max_position_embeddings"]
    rp = tc["rope_parameters"]
    assert f[a + "rope.freq_base"] == rp["full_attention"]["rope_theta"]
    assert f[a + "rope.freq_base_swa"] == rp["sliding_attention"]["rope_theta"]
    ff = f[a + "feed_forward_length"]
    n_shared = tc.get("num_kv_shared_layers", 0)
    want_ff = [tc["intermediate_size"] * (2 if tc.get("use_double_wide_mlp") and i >= L - n_shared else 1) for i in range(L)]
    assert (ff.tolist() if isinstance(ff, np.ndarray) else [ff] * L) == want_ff
    kv = f[a + "attention.head_count_kv"]
    want_kv = [tc["num_key_value_heads"] if is_swa[i] else plc.get(str(i), {}).get("num_key_value_heads", tc["num_key_value_heads"])
               for i in range(L)]
    assert (kv.tolist() if isinstance(kv, np.ndarray) else [kv] * L) == want_kv
    if tc.get("final_logit_softcapping"):
        assert f[a + "final_logit_softcapping"] == tc["final_logit_softcapping"]
    else:
        assert a + "final_logit_softcapping" not in f
    p = rp["full_attention"]["partial_rotary_factor"]
    r = int(hd_f * p / 2)
    assert f.tensor_float("rope_freqs.weight").tolist() == [1.0] * r + [np.float32(1e30)] * (hd_f // 2 - r)
    # the source config travels with the file
    assert json.loads(f["unigemma.source.config"]) == config
    dtype_scale = {"float32": np.float32(math.sqrt(tc["hidden_size"]))}
    assert f["unigemma.embedding_scale"] == pytest.approx(float(dtype_scale["float32"]), rel=1e-7)
    # tokenizer: every id's text, the special ids and the template
    tj = json.loads((d / "tokenizer.json").read_text())
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == 262144 == f.tensor_info("token_embd.weight").ne[1]
    for text, i in list(tj["model"]["vocab"].items())[:: 997]:
        assert tokens[i] == text
    for t in tj["added_tokens"]:
        assert tokens[t["id"]] == t["content"]
    assert f["tokenizer.ggml.model"] == "gemma4"
    assert f["tokenizer.ggml.bos_token_id"] == 2 and f["tokenizer.ggml.eos_token_id"] == 1
    assert f["tokenizer.ggml.add_bos_token"] is True
    assert f["tokenizer.chat_template"] == (d / "chat_template.jinja").read_text()
    types = f["tokenizer.ggml.token_type"]
    assert types[tokens.index("<0x41>")] == 6 and types[2] == 3 and types[tokens.index("<|tool_call>")] == 4
    merges = tj["model"]["merges"]
    assert len(f["tokenizer.ggml.merges"]) == len(merges)
    gen = json.loads((d / "generation_config.json").read_text())
    assert f["tokenizer.ggml.suppress_tokens"].tolist() == gen["suppress_tokens"]

    mm = unigemma.open_gguf(res.mmproj)
    vc, ac = config["vision_config"], config["audio_config"]
    assert mm["general.architecture"] == "clip" and "clip.projector_type" not in mm
    assert mm["clip.vision.projector_type"] == "gemma4uv" and mm["clip.audio.projector_type"] == "gemma4ua"
    assert mm["clip.vision.projection_dim"] == mm["clip.audio.projection_dim"] == tc["hidden_size"]
    assert mm["clip.vision.embedding_length"] == vc["mm_embed_dim"]
    assert mm["clip.vision.patch_size"] == vc["patch_size"]
    assert mm["clip.audio.embedding_length"] == ac["audio_embed_dim"]
    assert mm.tensor_info("v.position_embd.weight").ne == (vc["mm_embed_dim"], vc["mm_posemb_size"], 2)

    asst = unigemma.open_gguf(res.assistant)
    acfg = json.loads((hf_ckpt(f"assistant_{cfg}") / "config.json").read_text())
    b = "gemma4-assistant."
    assert asst["general.architecture"] == "gemma4-assistant"
    assert asst[b + "embedding_length"] == acfg["text_config"]["hidden_size"]
    assert asst[b + "embedding_length_out"] == acfg["backbone_hidden_size"] == tc["hidden_size"]
    assert asst[b + "nextn_predict_layers"] == asst[b + "block_count"] == acfg["text_config"]["num_hidden_layers"]
    assert json.loads(asst["unigemma.source.config"]) == acfg
    # the centroid head lives in a side file: llama.cpp refuses a drafter that holds it
    assert not [t.name for t in asst.tensors if t.name.startswith("masked_embd")]
    cen = unigemma.open_gguf(res.centroids)
    c = "gemma4-assistant-centroids."
    assert cen["general.architecture"] == "gemma4-assistant-centroids"
    assert cen[c + "num_centroids"] == acfg["num_centroids"] and cen[c + "top_k"] == acfg["centroid_intermediate_top_k"]
    assert cen.tensor_info("masked_embd_ordering").type == "I32"
    assert cen.tensor_info("masked_embd_centroids.weight").ne == (acfg["text_config"]["hidden_size"], acfg["num_centroids"])


def test_tensor_order_follows_llama_cpp(converted):
    """f16: the converter's order (rope_freqs, then shard by shard by HF name); q4_k_m: the
    order llama-quantize writes (global tensors, then by layer number, then by name)."""
    f16 = unigemma.open_gguf(converted("default", "f16").text)
    names = [t.name for t in f16.tensors]
    assert names[:2] == ["rope_freqs.weight", "token_embd.weight"]
    assert names.index("blk.10.attn_q.weight") < names.index("blk.2.attn_q.weight") if "blk.10.attn_q.weight" in names else True
    q = [t.name for t in unigemma.open_gguf(converted("default", "q4_k_m").text).tensors]
    assert q[:3] == ["output_norm.weight", "rope_freqs.weight", "token_embd.weight"]
    layers = [int(n.split(".")[1]) for n in q if n.startswith("blk.")]
    assert layers == sorted(layers)


def test_bf16_checkpoint_embedding_scale_rounds_like_transformers(hf_ckpt, tmp_path):
    res = convert(hf_ckpt("alt_layout_bf16"), "bf16", tmp_path / "a", progress=False)
    f = unigemma.open_gguf(res.text)
    # sqrt(48) = 6.928... rounds to 6.9375 in bf16; the f32 value is kept for f32 checkpoints
    assert f["unigemma.embedding_scale"] == 6.9375
    assert f["unigemma.source.dtype"] == "BF16"
    verify_file(res.text, hf_ckpt("alt_layout_bf16"), "model.language_model.")


def test_sharded_checkpoint_and_missing_shard(hf_ckpt, tmp_path):
    import shutil

    src = hf_ckpt("default")
    shards = sorted(src.glob("model-*.safetensors"))
    assert len(shards) >= 2
    bad = tmp_path / "ck"
    shutil.copytree(src, bad)
    sorted(bad.glob("model-*.safetensors"))[1].unlink()
    with pytest.raises(ConversionError, match="missing shard"):
        convert(bad, "f16", tmp_path / "out", progress=False)
    assert not list(tmp_path.glob("out*"))


def test_refuses_unknown_architecture(hf_ckpt, tmp_path):
    import shutil

    d = tmp_path / "ck"
    shutil.copytree(hf_ckpt("alt_layout"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["model_type"] = "llama"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="unsupported architecture"):
        convert(d, "f16", tmp_path / "out", progress=False)


def test_refuses_shape_mismatch_before_writing(hf_ckpt, tmp_path):
    import shutil

    d = tmp_path / "ck"
    shutil.copytree(hf_ckpt("alt_layout"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] += 32
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConversionError, match="mlp.gate_proj.weight.*does not match the config"):
        convert(d, "f16", tmp_path / "out", progress=False)
    assert list(tmp_path.glob("out*")) == []


def test_interrupted_conversion_leaves_no_output(hf_ckpt, tmp_path, monkeypatch):
    from unigemma import convert as conv_mod

    calls = {"n": 0}
    real = conv_mod._encode

    def boom(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(conv_mod, "_encode", boom)
    with pytest.raises(KeyboardInterrupt):
        convert(hf_ckpt("alt_layout"), "q8_0", tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # ~25 s: converter and inspect subprocesses
def test_cli_convert_and_inspect_compare(hf_ckpt, tmp_path):
    exe = [sys.executable, "-m", "unigemma"]
    r = subprocess.run(exe + ["convert", str(hf_ckpt("alt_layout")), "--outtype", "q8_0", "-o", str(tmp_path / "m")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "MiB/s" in r.stdout + r.stderr
    r2 = subprocess.run([sys.executable, "tools/convert_hf_to_gguf.py", str(hf_ckpt("alt_layout")), "--outtype", "f32",
                         "-o", str(tmp_path / "f"), "-q"], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r2.returncode == 0, r2.stderr
    r3 = subprocess.run(exe + ["inspect", "--compare", str(tmp_path / "f.gguf"), str(tmp_path / "m.gguf"), "--json"],
                        capture_output=True, text=True)
    assert r3.returncode == 0, r3.stderr
    c = json.loads(r3.stdout)
    rows = {row["name"]: row for row in c["tensors"]}
    assert rows["blk.0.ffn_down.weight"]["type_b"] == "Q8_0" and 0 < rows["blk.0.ffn_down.weight"]["max_abs"] < 0.05
    # hidden 48 is not a multiple of 32: llama.cpp falls back to F16 for rows of 48
    assert rows["blk.0.attn_q.weight"]["type_b"] == "F16"
    assert rows["blk.0.attn_norm.weight"]["max_abs"] == 0 and rows["blk.0.attn_norm.weight"]["identical_bytes"]
    assert any(m["key"] == "general.file_type" for m in c["metadata_differences"])
    r4 = subprocess.run(exe + ["convert", str(tmp_path), "--outtype", "f16"], capture_output=True, text=True)
    assert r4.returncode == 1 and "config.json" in r4.stderr and "Traceback" not in r4.stderr
