"""The tiny random HF checkpoints (tests/fixtures/tiny_checkpoints.py) have the layout the
converter and the parity tests rely on: tensor names and shapes of reference §1.5 / §1.6 read
straight from the safetensors headers, sharding, random norms and layer scalars, config fields,
tokenizer ids, and a transformers reload + forward pass."""
from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import pytest

import numpy as np
import torch  # noqa: F401  (test dependency: the oracle)
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import tiny_checkpoints as tc  # noqa: E402

# every test here checks checkpoints the module builds from scratch with transformers (~40 s)
pytestmark = pytest.mark.slow

TARGETS = list(tc.CONFIGS)
BF16 = ["default_bf16", "alt_layout_bf16"]
ASSISTANTS = [("default", True), ("default", False), ("kv_shared", True), ("alt_layout", True)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ckpts")
    paths = {name: tc.make_target(root / name, name) for name in TARGETS}
    paths["default_bf16"] = tc.make_target(root / "default_bf16", "default", dtype="bfloat16")
    paths["alt_layout_bf16"] = tc.make_target(root / "alt_layout_bf16", "alt_layout", dtype="bfloat16")
    paths["assistant_bf16"] = tc.make_assistant(root / "assistant_bf16", "default", dtype="bfloat16")
    for target, ordered in ASSISTANTS:
        paths[("assistant", target, ordered)] = tc.make_assistant(
            root / f"assistant_{target}_{int(ordered)}", target, ordered_embeddings=ordered)
    return paths


def _tensor_values(path: Path, name: str) -> "np.ndarray":
    """Decode one tensor from the raw safetensors bytes (F32 / BF16 / I64 only)."""
    header = tc.read_safetensors_index(path)
    dtype, shape, fname = header[name]
    with open(path / fname, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(n))[name]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        raw = f.read(end - start)
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4")
    elif dtype == "BF16":
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype == "I64":
        a = np.frombuffer(raw, dtype="<i8")
    else:
        raise AssertionError(dtype)
    return a.reshape(shape)


# ----------------------------------------------------------------------------- tensor layout
@pytest.mark.parametrize("name", TARGETS + BF16)
def test_target_tensor_names_and_shapes(built, name):
    index = tc.read_safetensors_index(built[name])
    expected = tc.expected_target_tensors(name.removesuffix("_bf16"))
    assert set(index) == set(expected), (sorted(set(expected) - set(index)), sorted(set(index) - set(expected)))
    for k, shape in expected.items():
        assert index[k][1] == shape, (k, index[k][1], shape)
    want = "BF16" if name.endswith("_bf16") else "F32"
    assert {d for d, _, _ in index.values()} == {want}
    assert "lm_head.weight" not in index  # tied head


def test_reference_doc_examples(built):
    """Spot checks copied from the reference's tiny example column (§1.5)."""
    idx = tc.read_safetensors_index(built["default"])
    p = "model.language_model.layers."
    assert idx["model.language_model.embed_tokens.weight"][1] == (262144, 64)
    assert idx[p + "0.self_attn.q_proj.weight"][1] == (128, 64)
    assert idx[p + "5.self_attn.q_proj.weight"][1] == (256, 64)
    assert idx[p + "0.self_attn.k_proj.weight"][1] == (64, 64)
    assert idx[p + "5.self_attn.k_proj.weight"][1] == (128, 64)
    assert idx[p + "5.self_attn.o_proj.weight"][1] == (64, 256)
    assert idx[p + "5.self_attn.q_norm.weight"][1] == (64,)
    assert idx[p + "3.layer_scalar"][1] == (1,)
    assert idx["model.vision_embedder.patch_dense.weight"][1] == (32, 6912)
    assert idx["model.vision_embedder.pos_embedding"][1] == (1120, 2, 32)
    assert idx["model.embed_audio.embedding_projection.weight"][1] == (64, 640)

    kv = tc.read_safetensors_index(built["kv_shared"])
    for i in (6, 7):  # KV-shared layers: only q/q_norm/o in attention, double-wide MLP
        attn = sorted(k.split(".self_attn.")[1] for k in kv if k.startswith(f"{p}{i}.self_attn."))
        assert attn == ["o_proj.weight", "q_norm.weight", "q_proj.weight"]
        assert kv[f"{p}{i}.mlp.gate_proj.weight"][1] == (256, 64)
        assert kv[f"{p}{i}.mlp.down_proj.weight"][1] == (64, 256)
    assert f"{p}5.self_attn.v_proj.weight" not in kv          # k_eq_v on the full layer
    assert kv[f"{p}5.self_attn.k_proj.weight"][1] == (64, 64)  # 1 KV head x 64 (override)
    assert kv[f"{p}4.self_attn.v_proj.weight"][1] == (64, 64)  # 2 KV heads x 32

    alt = tc.read_safetensors_index(built["alt_layout"])
    assert alt[f"{p}0.self_attn.q_proj.weight"][1] == (128, 48)  # 8 x 16
    assert alt[f"{p}2.self_attn.q_proj.weight"][1] == (256, 48)  # 8 x 32
    assert alt[f"{p}2.self_attn.k_proj.weight"][1] == (32, 48)   # 1 x 32
    assert alt[f"{p}1.self_attn.v_proj.weight"][1] == (16, 48)   # 1 x 16


@pytest.mark.parametrize("target,ordered", ASSISTANTS)
def test_assistant_tensor_names_and_shapes(built, target, ordered):
    path = built[("assistant", target, ordered)]
    index = tc.read_safetensors_index(path)
    expected = tc.expected_assistant_tensors(target, ordered)
    assert set(index) == set(expected), (sorted(set(expected) - set(index)), sorted(set(index) - set(expected)))
    for k, shape in expected.items():
        assert index[k][1] == shape, (k, index[k][1], shape)
    assert not any(".k_proj" in k or ".v_proj" in k or ".k_norm" in k for k in index)
    if ordered:
        assert index["masked_embedding.token_ordering"][0] == "I64"
        order = _tensor_values(path, "masked_embedding.token_ordering")
        assert np.array_equal(np.sort(order), np.arange(tc.VOCAB_SIZE))  # a permutation
        assert tc.VOCAB_SIZE % tc.ASSISTANT["num_centroids"] == 0


# ----------------------------------------------------------------------------- files
def test_sharding(built):
    d = built["default"]
    shards = sorted(d.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    assert not (d / "model.safetensors").exists()
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    assert set(index["weight_map"]) == set(tc.expected_target_tensors("default"))
    # a layer's tensors really are spread over several files
    assert len({f for k, f in index["weight_map"].items() if ".layers." in k}) >= 2
    assert len(sorted(built["default_bf16"].glob("model-*-of-*.safetensors"))) >= 2
    for name in ("kv_shared", "alt_layout"):
        assert (built[name] / "model.safetensors").exists()
        assert not (built[name] / "model.safetensors.index.json").exists()


@pytest.mark.parametrize("name", TARGETS + BF16)
def test_norms_and_layer_scalars_randomised(built, name):
    d = built[name]
    index = tc.read_safetensors_index(d)
    scalars = [k for k in index if k.endswith(".layer_scalar")]
    assert len(scalars) == tc.CONFIGS[name.removesuffix("_bf16")]["text"]["num_hidden_layers"]
    vals = np.array([float(_tensor_values(d, k)[0]) for k in scalars])
    assert np.all((vals >= 0.5) & (vals <= 1.5)), vals
    assert not np.any(vals == 1.0) and len(set(vals.tolist())) > len(vals) // 2, vals
    norms = [k for k in index if k.endswith("norm.weight") or (".patch_ln" in k and k.endswith(".weight"))]
    assert len(norms) >= 4 * len(scalars)
    for k in norms:
        w = _tensor_values(d, k)
        assert w.min() >= 0.5 and w.max() <= 1.5 and w.std() > 0.1, k


def test_bf16_is_rounded_f32(built):
    k = "model.language_model.layers.1.self_attn.q_proj.weight"
    a32 = _tensor_values(built["default"], k)
    a16 = _tensor_values(built["default_bf16"], k)
    assert np.allclose(a32, a16, rtol=2 ** -7, atol=0) and not np.array_equal(a32, a16)
    s = _tensor_values(built["default_bf16"], "model.language_model.layers.2.layer_scalar")
    assert tc.read_safetensors_index(built["default_bf16"])["model.language_model.layers.2.layer_scalar"][0] == "BF16"
    assert np.allclose(s, _tensor_values(built["default"], "model.language_model.layers.2.layer_scalar"), rtol=2 ** -7)
    # the drafter in bf16: float tensors BF16, the ordering stays int64 and unchanged
    idx = tc.read_safetensors_index(built["assistant_bf16"])
    assert set(idx) == set(tc.expected_assistant_tensors("default", True))
    assert {d for k, (d, _, _) in idx.items() if k != "masked_embedding.token_ordering"} == {"BF16"}
    assert idx["masked_embedding.token_ordering"][0] == "I64"
    assert np.array_equal(_tensor_values(built["assistant_bf16"], "masked_embedding.token_ordering"),
                          _tensor_values(built[("assistant", "default", True)], "masked_embedding.token_ordering"))
    tc.verify_assistant(built["assistant_bf16"], built["default_bf16"])


@pytest.mark.parametrize("name", TARGETS)
def test_target_config(built, name):
    cfg = json.loads((built[name] / "config.json").read_text())
    spec = tc.CONFIGS[name]["text"]
    t = cfg["text_config"]
    assert cfg["architectures"] == ["Gemma4UnifiedForConditionalGeneration"]
    assert cfg["model_type"] == "gemma4_unified" and t["model_type"] == "gemma4_unified_text"
    assert "moe_intermediate_size" in t and t["moe_intermediate_size"] is None
    assert t["layer_types"] == spec["layer_types"]
    assert t["sliding_window"] == spec["sliding_window"]
    assert t["final_logit_softcapping"] == spec["final_logit_softcapping"]
    assert t["rope_parameters"] == spec["rope_parameters"]
    # global_head_dim / num_global_key_value_heads are init-only: saved as per_layer_config
    assert "global_head_dim" not in t and "num_global_key_value_heads" not in t
    full = [str(i) for i, lt in enumerate(spec["layer_types"]) if lt == "full_attention"]
    assert sorted(t["per_layer_config"]) == sorted(full)
    hd, nkv = tc._per_layer_head_layout(spec)["full_attention"]
    for i in full:
        want = {"head_dim": hd}
        if spec.get("attention_k_eq_v") and spec.get("num_global_key_value_heads") is not None:
            want["num_key_value_heads"] = nkv
        assert t["per_layer_config"][i] == want
    for key, want in [("boi_token_id", 255999), ("eoi_token_id", 258882), ("image_token_id", 258880),
                      ("video_token_id", 258884), ("boa_token_id", 256000), ("eoa_token_index", 258883),
                      ("audio_token_id", 258881)]:
        assert cfg[key] == want
    assert cfg["vision_config"]["model_type"] == "gemma4_unified_vision"
    assert cfg["audio_config"]["audio_embed_dim"] == 640
    gen = json.loads((built[name] / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [1, 106, 50] and gen["suppress_tokens"] == tc.SUPPRESS_TOKENS
    pre = json.loads((built[name] / "preprocessor_config.json").read_text())
    proc = json.loads((built[name] / "processor_config.json").read_text())
    for c in (pre, proc["image_processor"]):
        assert c["image_mean"] == [0.0, 0.0, 0.0] and c["image_std"] == [1.0, 1.0, 1.0]
        assert c["patch_size"] == 16 and c["pooling_kernel_size"] == 3 and c["max_soft_tokens"] == 280
    assert proc["feature_extractor"]["feature_size"] == 640
    assert proc["feature_extractor"]["sampling_rate"] == 16000


def test_assistant_config(built):
    cfg = json.loads((built[("assistant", "kv_shared", True)] / "config.json").read_text())
    assert cfg["architectures"] == ["Gemma4UnifiedAssistantForCausalLM"]
    assert cfg["backbone_hidden_size"] == 64 and cfg["use_ordered_embeddings"] is True
    assert cfg["num_centroids"] == 64 and cfg["centroid_intermediate_top_k"] == 8
    t = cfg["text_config"]
    assert t["moe_intermediate_size"] is None
    assert t["num_kv_shared_layers"] == t["num_hidden_layers"] == 4
    assert t["hidden_size"] == 32 and t["head_dim"] == 32 and t["num_key_value_heads"] == 2
    assert t["per_layer_config"] == {"3": {"head_dim": 64, "num_key_value_heads": 1}}
    assert t["sliding_window"] == 16


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_files(built):
    d = built["default"]
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    model = tj["model"]
    assert model["type"] == "BPE" and model["byte_fallback"] is True
    assert tj["decoder"]["type"] == "Sequence"
    assert [x["type"] for x in tj["decoder"]["decoders"]] == ["Replace", "ByteFallback", "Fuse"]
    assert tj["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    vocab = model["vocab"]
    # every id 0..262143 is a vocab entry; added tokens are a subset at their vocab ids
    assert len(vocab) == tc.VOCAB_SIZE and sorted(vocab.values()) == list(range(tc.VOCAB_SIZE))
    added = {a["content"]: a["id"] for a in tj["added_tokens"]}
    assert added == tc.SPECIAL_TOKENS
    assert all(vocab[t] == i for t, i in added.items())
    for b in range(256):
        assert vocab[f"<0x{b:02X}>"] == tc.BYTE_TOKEN_BASE + b
    assert 100 <= len(model["merges"]) <= 1000
    for want_tok, want_id in [("<pad>", 0), ("<eos>", 1), ("<bos>", 2), ("<unk>", 3), ("<mask>", 4),
                              ("<|tool_response>", 50), ("<|turn>", 105), ("<turn|>", 106),
                              ("<|image>", 255999), ("<|audio>", 256000), ("<|image|>", 258880),
                              ("<|audio|>", 258881), ("<image|>", 258882), ("<audio|>", 258883),
                              ("<|video|>", 258884)]:
        assert vocab[want_tok] == want_id
    for t in ("<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<tool_response|>", '<|"|>',
              "<|think|>", "<|tool>", "<tool|>"):
        assert t in added
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True and cfg["add_eos_token"] is False
    assert (cfg["bos_token"], cfg["eos_token"], cfg["pad_token"], cfg["unk_token"]) == (
        "<bos>", "<eos>", "<pad>", "<unk>")
    assert "<|tool_call>call:" in (d / "chat_template.jinja").read_text()


def test_tokenizer_roundtrip(built):
    tok = transformers.AutoTokenizer.from_pretrained(built["default"])
    assert len(tok) == tc.VOCAB_SIZE
    text = "Hello world, the people of Paris!\n\ncafé 日本"
    ids = tok(text)["input_ids"]
    assert ids[0] == 2 and ids[-1] != 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert any(tc.BYTE_TOKEN_BASE <= i < tc.BYTE_TOKEN_BASE + 256 for i in ids)  # byte fallback used
    assert len(ids) < len(text.encode())  # merges used
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [2, 105] and 106 in ids and ids[-1] == tc.SPECIAL_TOKENS["<channel|>"]
    assert tok.image_token_id == 258880 and tok.convert_tokens_to_ids("<|video|>") == 258884


# ----------------------------------------------------------------------------- reload + forward
@pytest.mark.parametrize("name", TARGETS + BF16)
def test_target_reload_forward(built, name):
    logits = tc.verify_target(built[name])
    cap = tc.CONFIGS[name.removesuffix("_bf16")]["text"]["final_logit_softcapping"]
    if cap:
        assert float(logits.abs().max()) <= cap


@pytest.mark.parametrize("target,ordered", ASSISTANTS)
def test_assistant_reload_forward(built, target, ordered):
    out = tc.verify_assistant(built[("assistant", target, ordered)], built[target])
    assert out.logits.shape[-1] == tc.VOCAB_SIZE


def test_patch_is_scoped():
    from transformers import Gemma4UnifiedTextConfig

    cfg = Gemma4UnifiedTextConfig(num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"])
    assert cfg.kv_sharing_modes == [None, None]
    with tc.patch_transformers_assistant():
        assert cfg.kv_sharing_modes == ["store", "store"]
        with tc.patch_transformers_assistant():
            pass
        assert cfg.kv_sharing_modes == ["store", "store"]  # inner exit keeps the outer patch
    assert cfg.kv_sharing_modes == [None, None]


# ----------------------------------------------------------------------------- determinism
def test_deterministic_from_seed(tmp_path):
    def digest(d):
        return hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()

    a = tc.make_assistant(tmp_path / "a", "alt_layout", seed=3, ordered_embeddings=False)
    b = tc.make_assistant(tmp_path / "b", "alt_layout", seed=3, ordered_embeddings=False)
    c = tc.make_assistant(tmp_path / "c", "alt_layout", seed=4, ordered_embeddings=False)
    assert digest(a) == digest(b) != digest(c)


def test_bf16_embed_scale_is_not_exact(built):
    """alt_layout has H=48: transformers multiplies embeddings by sqrt(48) rounded to bf16 (6.9375)."""
    import torch

    m = transformers.Gemma4UnifiedForConditionalGeneration.from_pretrained(built["alt_layout_bf16"])
    emb = m.model.language_model.embed_tokens
    assert emb.weight.dtype == torch.bfloat16
    assert float(emb.embed_scale.to(emb.weight.dtype)) == 6.9375 != 48 ** 0.5
