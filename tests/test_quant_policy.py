"""Tests for unigemma.convert.quant_policy.

Every expectation below is a fact read from llama.cpp (vendored in llama-cpp-python 0.3.36)
and, where marked [V], confirmed by running the real tools (see tools/check_quant_policy.py):

* conversion/base.py  ModelBase.prepare_tensors      -> converter rules (f32/f16/bf16/q8_0)
* conversion/base.py  MmprojModel.tensor_force_quant -> mmproj patch_embd F16/F32
* src/llama-quant.cpp tensor_allows_quantization, llama_tensor_get_type_impl,
                      tensor_type_fallback, llama_ftype_get_default_type,
                      init_quantize_state_counters   -> llama-quantize rules
* src/llama-model-loader.h weight_name_comparer       -> llama-quantize tensor order

Set UNIGEMMA_LLAMA_REFS=DIR[:DIR...] to also check the policy against GGUF files /
dry-run logs produced by llama.cpp (tools/check_quant_policy.py check).
"""
from __future__ import annotations

import pytest

from unigemma.convert import quant_policy as qp

choose = qp.choose_tensor_types

V = 262144


# ---------------------------------------------------------------------------------------------
# tensor-list builders (GGUF names after our converter's renames, ne fastest-first)
# ---------------------------------------------------------------------------------------------

def text_tensors(*, H, FF, NH, NKV, HD_S, HD_F, L, full_every=6, k_eq_v=False, vocab=V,
                 kv_shared=0, double_wide=False, untied=False, nkv_full=None):
    swa = [(i % full_every) != full_every - 1 for i in range(L)]
    swa[-1] = False
    nkv_full = NKV if nkv_full is None else nkv_full
    t = [("token_embd.weight", (H, vocab)), ("rope_freqs.weight", (HD_F // 2,))]
    for i in range(L):
        hd = HD_S if swa[i] else HD_F
        nkv = NKV if swa[i] else nkv_full
        shared = i >= L - kv_shared
        ff = 2 * FF if (shared and double_wide) else FF
        b = f"blk.{i}."
        t.append((b + "attn_norm.weight", (H,)))
        t.append((b + "attn_q.weight", (H, NH * hd)))
        if not shared:
            t.append((b + "attn_k.weight", (H, nkv * hd)))
            if swa[i] or not k_eq_v:
                t.append((b + "attn_v.weight", (H, nkv * hd)))
        t.append((b + "attn_q_norm.weight", (hd,)))
        if not shared:
            t.append((b + "attn_k_norm.weight", (hd,)))
        t += [
            (b + "attn_output.weight", (NH * hd, H)),
            (b + "post_attention_norm.weight", (H,)),
            (b + "ffn_norm.weight", (H,)),
            (b + "ffn_gate.weight", (H, ff)),
            (b + "ffn_up.weight", (H, ff)),
            (b + "ffn_down.weight", (ff, H)),
            (b + "post_ffw_norm.weight", (H,)),
            (b + "layer_output_scale.weight", (1,)),
        ]
    t.append(("output_norm.weight", (H,)))
    if untied:
        t.append(("output.weight", (H, vocab)))
    return t


def g12b(L=48, **kw):
    return text_tensors(H=3840, FF=15360, NH=16, NKV=8, HD_S=256, HD_F=512, L=L, **kw)


def tiny(L=6, **kw):
    return text_tensors(H=64, FF=128, NH=4, NKV=2, HD_S=32, HD_F=64, L=L, **kw)


def mmproj_tensors(Dv=3840, H=3840, P=1120):
    return [
        ("v.patch_norm.1.weight", (6912,)), ("v.patch_norm.1.bias", (6912,)),
        ("v.patch_embd.weight", (6912, Dv)), ("v.patch_embd.bias", (Dv,)),
        ("v.patch_norm.2.weight", (Dv,)), ("v.patch_norm.2.bias", (Dv,)),
        ("v.position_embd.weight", (Dv, P, 2)),
        ("v.patch_norm.3.weight", (Dv,)), ("v.patch_norm.3.bias", (Dv,)),
        ("mm.input_projection.weight", (Dv, H)),
        ("mm.a.input_projection.weight", (640, H)),
    ]


def assistant_tensors(Ha=32, Ht=64, FF=64, NH=4, HD_S=32, HD_F=64, L=4, ordered=True, n_centroids=64):
    swa = [True] * (L - 1) + [False]
    t = [("token_embd.weight", (Ha, V)), ("rope_freqs.weight", (HD_F // 2,)),
         ("nextn.pre_projection.weight", (2 * Ht, Ha)), ("nextn.post_projection.weight", (Ha, Ht))]
    for i in range(L):
        hd = HD_S if swa[i] else HD_F
        b = f"blk.{i}."
        t += [(b + "attn_norm.weight", (Ha,)), (b + "attn_q.weight", (Ha, NH * hd)),
              (b + "attn_q_norm.weight", (hd,)), (b + "attn_output.weight", (NH * hd, Ha)),
              (b + "post_attention_norm.weight", (Ha,)), (b + "ffn_norm.weight", (Ha,)),
              (b + "ffn_gate.weight", (Ha, FF)), (b + "ffn_up.weight", (Ha, FF)),
              (b + "ffn_down.weight", (FF, Ha)), (b + "post_ffw_norm.weight", (Ha,)),
              (b + "layer_output_scale.weight", (1,))]
    t.append(("output_norm.weight", (Ha,)))
    if ordered:
        t += [("masked_embd_centroids.weight", (Ha, n_centroids)), ("masked_embd_ordering", (V,))]
    return t


def layers_with(types, suffix, wanted):
    return sorted(int(n.split(".")[1]) for n, t in types.items()
                  if n.startswith("blk.") and n.endswith(suffix) and t == wanted)


ALL_ONE_D = lambda tensors: [n for n, ne in tensors if len(ne) == 1]  # noqa: E731


# ---------------------------------------------------------------------------------------------
# API / constants
# ---------------------------------------------------------------------------------------------

def test_constants():
    assert qp.OUTTYPES == ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q6_k")
    # include/llama.h enum llama_ftype
    assert qp.FILE_TYPE == {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q6_k": 18, "bf16": 32}


@pytest.mark.parametrize("outtype,expected", [
    ("f32", None), ("f16", None), ("bf16", None), ("q8_0", None),
    ("q4_0", "F16"), ("q4_k_m", "F16"), ("q6_k", "F16"),
])
def test_quant_source_type(outtype, expected):
    assert qp.quant_source_type(outtype) == expected


@pytest.mark.parametrize("outtype", qp.OUTTYPES)
def test_file_type_for(outtype):
    assert qp.file_type_for(outtype, "text") == qp.FILE_TYPE[outtype]
    assert qp.file_type_for(outtype, "assistant") == qp.FILE_TYPE[outtype]
    # our choice: mmproj at q4_0/q4_k_m/q6_k follows the q8_0 converter rules
    exp = 7 if outtype in ("q4_0", "q4_k_m", "q6_k") else qp.FILE_TYPE[outtype]
    assert qp.file_type_for(outtype, "mmproj") == exp


def test_bad_arguments():
    with pytest.raises(ValueError):
        choose(tiny(), "q5_k_m", "text")
    with pytest.raises(ValueError):
        choose(tiny(), "f16", "vision")
    with pytest.raises(ValueError):
        choose([("a.weight", (32, 32)), ("a.weight", (32, 32))], "f16", "text")


@pytest.mark.parametrize("outtype", qp.OUTTYPES)
def test_result_covers_every_tensor_in_input_order(outtype):
    t = tiny()
    r = choose(t, outtype, "text")
    assert list(r) == [n for n, _ in t]


# ---------------------------------------------------------------------------------------------
# always-F32 tensors (prepare_tensors: n_dims <= 1 / _norm.weight; llama-quantize:
# tensor_allows_quantization n_dims < 2 keeps the F16 file's F32)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype", qp.OUTTYPES)
@pytest.mark.parametrize("builder", [g12b, tiny], ids=["12b", "tiny"])
def test_one_d_tensors_are_f32(outtype, builder):
    t = builder()
    r = choose(t, outtype, "text")
    one_d = ALL_ONE_D(t)
    assert "rope_freqs.weight" in one_d and "blk.0.layer_output_scale.weight" in one_d
    assert all(r[n] == "F32" for n in one_d)
    assert all(r[n] == "F32" for n in r if n.endswith("_norm.weight"))


# ---------------------------------------------------------------------------------------------
# converter outtypes on the 12B shapes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype,weight_type", [("f32", "F32"), ("f16", "F16"), ("bf16", "BF16"), ("q8_0", "Q8_0")])
@pytest.mark.parametrize("kind,builder", [("text", g12b), ("assistant", assistant_tensors)])
def test_converter_outtypes_all_2d_weights(outtype, weight_type, kind, builder):
    t = builder() if kind == "text" else assistant_tensors(Ha=1024, Ht=3840, FF=4096)
    r = choose(t, outtype, kind)
    for n, ne in t:
        if n == "masked_embd_ordering":
            continue
        if len(ne) >= 2 and n != "masked_embd_centroids.weight":
            # token_embd only changes for TQ1_0/TQ2_0 (prepare_tensors TOKEN_EMBD rule)
            assert r[n] == weight_type, n


@pytest.mark.parametrize("outtype,expected", [("f32", "F32"), ("f16", "F16"), ("bf16", "BF16"), ("q8_0", "F16")])
def test_converter_quanterror_fallback_to_f16(outtype, expected):
    # H=48: rows of 48 do not split into Q8_0 blocks of 32 -> gguf.QuantError -> F16 [V alt_layout]
    t = text_tensors(H=48, FF=96, NH=8, NKV=1, HD_S=16, HD_F=32, L=7)
    r = choose(t, outtype, "text")
    assert r["token_embd.weight"] == expected
    assert r["blk.0.attn_q.weight"] == expected           # ne [48, 128]
    # ne[0] = 128 is a multiple of 32 -> plain outtype type
    assert r["blk.0.attn_output.weight"] == {"q8_0": "Q8_0"}.get(outtype, expected)


# ---------------------------------------------------------------------------------------------
# llama-quantize on the 12B shapes (no fallbacks: 3840 = 15*256, 15360 = 60*256)  [V dry-run]
# ---------------------------------------------------------------------------------------------

# use_more_bits(i, 48): i < 6 || i >= 42 || (i - 6) % 3 == 2
MORE_BITS_48 = [0, 1, 2, 3, 4, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 42, 43, 44, 45, 46, 47]
# attn_v counted over the 40 attn_v tensors that exist when full layers have k == v
MORE_BITS_ATTN_V_48_KEQV = [0, 1, 2, 3, 4, 8, 12, 15, 19, 22, 26, 30, 33, 37, 40, 42, 43, 44, 45, 46]


@pytest.mark.parametrize("k_eq_v", [False, True])
def test_12b_q4_k_m(k_eq_v):
    t = g12b(k_eq_v=k_eq_v)
    r = choose(t, "q4_k_m", "text")
    # tied embeddings (no output.weight): token_embd gets the output rule -> Q6_K
    assert r["token_embd.weight"] == "Q6_K"
    assert layers_with(r, ".attn_v.weight", "Q6_K") == (MORE_BITS_ATTN_V_48_KEQV if k_eq_v else MORE_BITS_48)
    # ffn_down counts against n_layer (block_count), not the number of ffn_down tensors
    assert layers_with(r, ".ffn_down.weight", "Q6_K") == MORE_BITS_48
    n_v = sum(1 for n in r if n.endswith("attn_v.weight"))
    assert len(layers_with(r, ".attn_v.weight", "Q4_K")) == n_v - len(layers_with(r, ".attn_v.weight", "Q6_K"))
    for suf in ("attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"):
        assert {t_ for n, t_ in r.items() if n.endswith(suf)} == {"Q4_K"}, suf
    counts = {}
    for v in r.values():
        counts[v] = counts.get(v, 0) + 1
    assert counts == ({"F32": 338, "Q4_K": 284, "Q6_K": 45} if k_eq_v else {"F32": 338, "Q4_K": 288, "Q6_K": 49})


def test_12b_q4_k_m_6_layers():
    # [V] 6-layer dry runs: use_more_bits(i, 6) = i >= 5 || (i % 3 == 2)
    r = choose(g12b(L=6), "q4_k_m", "text")
    assert layers_with(r, ".attn_v.weight", "Q6_K") == [2, 5]
    assert layers_with(r, ".ffn_down.weight", "Q6_K") == [2, 5]
    r = choose(g12b(L=6, k_eq_v=True), "q4_k_m", "text")
    assert layers_with(r, ".attn_v.weight", "Q6_K") == [2, 4]   # 5 attn_v tensors: idx 2 and 4
    assert layers_with(r, ".ffn_down.weight", "Q6_K") == [2, 5]


@pytest.mark.parametrize("outtype,weight", [("q4_0", "Q4_0"), ("q6_k", "Q6_K")])
def test_12b_q4_0_and_q6_k(outtype, weight):
    t = g12b()
    r = choose(t, outtype, "text")
    # tied token_embd -> Q6_K even for Q4_0 (llama_tensor_get_type_impl OUTPUT/tied branch)
    assert r["token_embd.weight"] == "Q6_K"
    for n, ne in t:
        if len(ne) >= 2 and n != "token_embd.weight":
            assert r[n] == weight, n


def test_untied_output_takes_the_q6_k_and_token_embd_the_default():
    # has_tied_embeddings is false once output.weight exists
    r = choose(g12b(L=6, untied=True), "q4_0", "text")
    assert r["output.weight"] == "Q6_K"
    assert r["token_embd.weight"] == "Q4_0"
    r = choose(g12b(L=6, untied=True), "q4_k_m", "text")
    assert r["output.weight"] == "Q6_K" and r["token_embd.weight"] == "Q4_K"


# ---------------------------------------------------------------------------------------------
# llama-quantize fallbacks on the tiny shapes (tensor_type_fallback)  [V default/kv_shared]
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,outtype,expected", [
    # token_embd ne [64, V]: Q4_0 -> tied rule Q6_K -> 64 % 256 -> Q8_0
    ("token_embd.weight", "q4_0", "Q8_0"),
    # Q4_K_M: 64 % 256 (the default type's block) -> Q8_0 directly
    ("token_embd.weight", "q4_k_m", "Q8_0"),
    ("token_embd.weight", "q6_k", "Q8_0"),
    # Q4_K -> Q5_0 on 64/128-wide rows
    ("blk.0.attn_q.weight", "q4_k_m", "Q5_0"),
    ("blk.0.attn_k.weight", "q4_k_m", "Q5_0"),
    ("blk.0.attn_v.weight", "q4_k_m", "Q5_0"),          # use_more_bits(0, 5) false
    ("blk.2.attn_v.weight", "q4_k_m", "Q8_0"),          # use_more_bits(2, 5): Q6_K -> Q8_0
    ("blk.0.ffn_down.weight", "q4_k_m", "Q5_0"),        # use_more_bits(0, 6) false
    ("blk.2.ffn_down.weight", "q4_k_m", "Q8_0"),        # Q6_K -> Q8_0
    ("blk.5.ffn_down.weight", "q4_k_m", "Q8_0"),
    ("blk.5.attn_output.weight", "q4_k_m", "Q4_K"),     # ne [256, 64]: fits
    ("blk.0.attn_output.weight", "q4_k_m", "Q5_0"),     # ne [128, 64]
    # Q6_K -> Q8_0
    ("blk.0.attn_q.weight", "q6_k", "Q8_0"),
    ("blk.5.attn_output.weight", "q6_k", "Q6_K"),
    # 32-block types fit
    ("blk.0.attn_q.weight", "q4_0", "Q4_0"),
    ("blk.2.ffn_down.weight", "q4_0", "Q4_0"),
])
def test_tiny_fallbacks(name, outtype, expected):
    r = choose(tiny(), outtype, "text")
    assert r[name] == expected


def test_tiny_q4_k_m_counts_match_llama_quantize():
    # [V] default.text.q4_k_m.gguf: F32:44, Q4_K:1, Q5_0:37, Q8_0:5
    r = choose(tiny(), "q4_k_m", "text")
    counts = {}
    for v in r.values():
        counts[v] = counts.get(v, 0) + 1
    assert counts == {"F32": 44, "Q4_K": 1, "Q5_0": 37, "Q8_0": 5}


def test_kv_shared_double_wide():
    # [V] kv_shared: 8 layers [s,s,s,s,s,f,s,f], k_eq_v, 2 shared layers with 2*FF
    t = text_tensors(H=64, FF=128, NH=4, NKV=2, HD_S=32, HD_F=64, L=8, full_every=6,
                     k_eq_v=True, kv_shared=2, double_wide=True, nkv_full=1)
    r = choose(t, "q4_k_m", "text")
    # 5 attn_v tensors (layers 0-4): use_more_bits(i, 5) -> idx 2, 4 -> Q6_K -> Q8_0
    assert layers_with(r, ".attn_v.weight", "Q8_0") == [2, 4]
    # ffn_down over n_layer=8: idx 0 and 7 need more bits; layer 6/7 rows are 256 wide
    assert r["blk.0.ffn_down.weight"] == "Q8_0"
    assert r["blk.6.ffn_down.weight"] == "Q6_K"         # use_more_bits(6, 8): (6 - 1) % 3 == 2
    assert r["blk.7.ffn_down.weight"] == "Q6_K"
    assert r["blk.6.ffn_gate.weight"] == "Q5_0"
    counts = {}
    for v in r.values():
        counts[v] = counts.get(v, 0) + 1
    assert counts == {"F32": 56, "Q4_K": 2, "Q5_0": 43, "Q6_K": 2, "Q8_0": 5}


@pytest.mark.parametrize("outtype,expected", [("q4_0", "F16"), ("q4_k_m", "F16"), ("q6_k", "F16")])
def test_row_length_not_multiple_of_32_falls_back_to_f16(outtype, expected):
    # H=48 [V alt_layout]: no 32-block type fits -> F16 (tensor_type_fallback)
    t = text_tensors(H=48, FF=96, NH=8, NKV=1, HD_S=16, HD_F=32, L=7, full_every=3)
    r = choose(t, outtype, "text")
    assert r["token_embd.weight"] == expected
    assert r["blk.0.attn_q.weight"] == expected
    assert r["blk.0.ffn_down.weight"] == {"q4_0": "Q4_0", "q4_k_m": "Q5_0", "q6_k": "Q8_0"}[outtype]  # ne[0]=96


def test_trailing_unit_dim_counts_as_1d_for_llama_quantize():
    # ggml_n_dims ignores trailing 1s: a [256, 1] tensor is not requantized (keeps F16),
    # while the converter (numpy ndim = 2) quantizes it.
    t = tiny() + [("blk.0.extra.weight", (256, 1))]
    assert choose(t, "q8_0", "text")["blk.0.extra.weight"] == "Q8_0"
    assert choose(t, "q4_k_m", "text")["blk.0.extra.weight"] == "F16"


# ---------------------------------------------------------------------------------------------
# assistant (gemma4-assistant)  [V assistant_* fixtures]
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype,expected", [
    ("f32", {"token_embd.weight": "F32", "nextn.pre_projection.weight": "F32"}),
    ("f16", {"token_embd.weight": "F16", "nextn.pre_projection.weight": "F16"}),
    ("q8_0", {"token_embd.weight": "Q8_0", "nextn.pre_projection.weight": "Q8_0",
              "nextn.post_projection.weight": "Q8_0"}),
    ("q4_0", {"token_embd.weight": "Q8_0", "nextn.pre_projection.weight": "Q4_0"}),
    ("q4_k_m", {"token_embd.weight": "Q8_0", "nextn.pre_projection.weight": "Q5_0",
                "nextn.post_projection.weight": "Q5_0", "blk.2.ffn_down.weight": "Q8_0",
                "blk.0.ffn_down.weight": "Q5_0"}),
    ("q6_k", {"token_embd.weight": "Q8_0", "nextn.pre_projection.weight": "Q8_0"}),
])
def test_assistant_tiny(outtype, expected):
    r = choose(assistant_tensors(), outtype, "assistant")
    for n, v in expected.items():
        assert r[n] == v, n
    assert r["blk.0.layer_output_scale.weight"] == "F32"


def test_assistant_real_width_token_embd_q6_k():
    r = choose(assistant_tensors(Ha=1024, Ht=3840, FF=4096), "q4_k_m", "assistant")
    assert r["token_embd.weight"] == "Q6_K"
    assert r["nextn.pre_projection.weight"] == "Q4_K"


@pytest.mark.parametrize("outtype,centroids", [
    ("f32", "F32"), ("f16", "F16"), ("bf16", "BF16"), ("q8_0", "Q8_0"),
    ("q4_0", "Q8_0"), ("q4_k_m", "Q8_0"), ("q6_k", "Q8_0"),
])
def test_masked_embedding_tensors(outtype, centroids):
    r = choose(assistant_tensors(Ha=1024, Ht=3840, FF=4096), outtype, "assistant")
    assert r["masked_embd_centroids.weight"] == centroids
    assert r["masked_embd_ordering"] == "I32"
    # and they do not disturb the llama-quantize counters of the other tensors
    r2 = choose(assistant_tensors(Ha=1024, Ht=3840, FF=4096, ordered=False), outtype, "assistant")
    assert all(r[n] == r2[n] for n in r2)


def test_masked_embedding_centroids_fallback():
    r = choose(assistant_tensors(Ha=48, Ht=64, FF=96), "q4_k_m", "assistant")
    assert r["masked_embd_centroids.weight"] == "F16"


# ---------------------------------------------------------------------------------------------
# mmproj (clip)  [V default/alt_layout mmproj at f32/f16/bf16/q8_0]
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype,patch,proj", [
    ("f32", "F32", "F32"),
    ("f16", "F16", "F16"),      # MmprojModel.tensor_force_quant: F16 only for --outtype f16
    ("bf16", "F32", "BF16"),
    ("q8_0", "F32", "Q8_0"),
    ("q4_0", "F32", "Q8_0"),    # our choice: q8_0 converter rules
    ("q4_k_m", "F32", "Q8_0"),
    ("q6_k", "F32", "Q8_0"),
])
@pytest.mark.parametrize("Dv,H", [(3840, 3840), (32, 64)])
def test_mmproj(outtype, patch, proj, Dv, H):
    r = choose(mmproj_tensors(Dv=Dv, H=H), outtype, "mmproj")
    assert r["v.patch_embd.weight"] == patch
    assert r["v.position_embd.weight"] == "F32"          # V_ENC_EMBD_POS forced F32 (3-D)
    assert r["mm.input_projection.weight"] == proj
    assert r["mm.a.input_projection.weight"] == proj
    for n in ("v.patch_norm.1.weight", "v.patch_norm.1.bias", "v.patch_embd.bias",
              "v.patch_norm.2.weight", "v.patch_norm.3.bias"):
        assert r[n] == "F32"


def test_mmproj_q8_0_row_not_multiple_of_32():
    r = choose(mmproj_tensors(Dv=48, H=64), "q8_0", "mmproj")
    assert r["mm.input_projection.weight"] == "F16"      # QuantError -> F16


# ---------------------------------------------------------------------------------------------
# llama-quantize tensor order (weight_name_comparer)
# ---------------------------------------------------------------------------------------------

def test_llama_quantize_order():
    names = ["token_embd.weight", "rope_freqs.weight", "blk.10.attn_q.weight", "blk.2.ffn_up.weight",
             "blk.2.attn_v.weight", "output_norm.weight", "blk.9.attn_q.weight"]
    assert qp.llama_quantize_order(names) == [
        "output_norm.weight", "rope_freqs.weight", "token_embd.weight",
        "blk.2.attn_v.weight", "blk.2.ffn_up.weight", "blk.9.attn_q.weight", "blk.10.attn_q.weight"]

# The check against files produced by llama.cpp itself is a tool, not a test (it needs a
# llama.cpp build): python tools/check_quant_policy.py check DIR_OF_LLAMA_CPP_OUTPUTS
