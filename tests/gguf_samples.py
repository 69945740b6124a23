"""Small valid model GGUFs written with the `gguf` package (the reference writer), for
reader and schema tests. Overrides let a test break exactly one thing."""
from __future__ import annotations

import numpy as np
import gguf

H, NH, NKV, HD_S, HD_F, FF, V, L = 32, 2, 1, 16, 32, 64, 24, 3
SWA = [True, True, False]


def gemma4_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = {"rope_freqs.weight": np.ones(HD_F // 2, np.float32),
         "token_embd.weight": rng.standard_normal((V, H), dtype=np.float32),
         "output_norm.weight": rng.standard_normal(H, dtype=np.float32)}
    for i in range(L):
        hd = HD_S if SWA[i] else HD_F
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = rng.standard_normal(H, dtype=np.float32)
        t[p + "attn_q.weight"] = rng.standard_normal((NH * hd, H), dtype=np.float32)
        t[p + "attn_k.weight"] = rng.standard_normal((NKV * hd, H), dtype=np.float32)
        t[p + "attn_v.weight"] = rng.standard_normal((NKV * hd, H), dtype=np.float32)
        t[p + "attn_q_norm.weight"] = rng.standard_normal(hd, dtype=np.float32)
        t[p + "attn_k_norm.weight"] = rng.standard_normal(hd, dtype=np.float32)
        t[p + "attn_output.weight"] = rng.standard_normal((H, NH * hd), dtype=np.float32)
        t[p + "post_attention_norm.weight"] = rng.standard_normal(H, dtype=np.float32)
        t[p + "ffn_norm.weight"] = rng.standard_normal(H, dtype=np.float32)
        t[p + "ffn_gate.weight"] = rng.standard_normal((FF, H), dtype=np.float32)
        t[p + "ffn_up.weight"] = rng.standard_normal((FF, H), dtype=np.float32)
        t[p + "ffn_down.weight"] = rng.standard_normal((H, FF), dtype=np.float32)
        t[p + "post_ffw_norm.weight"] = rng.standard_normal(H, dtype=np.float32)
        t[p + "layer_output_scale.weight"] = rng.standard_normal(1, dtype=np.float32)
    return t


def gemma4_keys() -> dict[str, tuple]:
    a = "gemma4."
    return {
        a + "block_count": ("u32", L), a + "context_length": ("u32", 4096), a + "embedding_length": ("u32", H),
        a + "feed_forward_length": ("u32", FF), a + "attention.head_count": ("u32", NH),
        a + "attention.head_count_kv": ("u32", NKV), a + "attention.key_length": ("u32", HD_F),
        a + "attention.value_length": ("u32", HD_F), a + "attention.key_length_swa": ("u32", HD_S),
        a + "attention.value_length_swa": ("u32", HD_S), a + "attention.layer_norm_rms_epsilon": ("f32", 1e-6),
        a + "attention.sliding_window": ("u32", 8), a + "attention.sliding_window_pattern": ("boolarr", SWA),
        a + "embedding_length_per_layer_input": ("u32", 0), a + "rope.freq_base": ("f32", 1e6),
        "tokenizer.ggml.model": ("str", "gemma4"),
        "tokenizer.ggml.tokens": ("strarr", [f"tok{i}" for i in range(V)]),
    }


def write_gemma4(path, drop_keys=(), key_overrides=None, drop_tensors=(), tensor_overrides=None, seed=0,
                 split_max_tensors=0):
    rng = np.random.default_rng(seed)
    keys = gemma4_keys()
    keys.update(key_overrides or {})
    tensors = gemma4_tensors(rng)
    tensors.update(tensor_overrides or {})
    w = gguf.GGUFWriter(str(path), "gemma4", split_max_tensors=split_max_tensors)
    for k, (kind, v) in keys.items():
        if k in drop_keys:
            continue
        if kind == "u32":
            w.add_uint32(k, v)
        elif kind == "i32arr":
            w.add_array(k, [int(x) for x in v])
        elif kind == "f32":
            w.add_float32(k, v)
        elif kind == "str":
            w.add_string(k, v)
        elif kind in ("strarr", "boolarr"):
            w.add_array(k, list(v))
    for name, arr in tensors.items():
        if name not in drop_tensors:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


# A drafter (arch gemma4-assistant) for the gemma4 sample above: hidden HA, reads target
# hidden states of H, layers [sliding, full] with the target's head layout (they read target
# layers 1 and 2), and its centroid side file (NC clusters of V / NC tokens, top-k TOPK).
HA, FF_A, L_A, NC, TOPK = 16, 32, 2, 4, 2
SWA_A = [True, False]


def assistant_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = {"rope_freqs.weight": np.array([1.0] * (HD_F // 4) + [1e30] * (HD_F // 4), np.float32),
         "token_embd.weight": rng.standard_normal((V, HA), dtype=np.float32),
         "output_norm.weight": rng.uniform(0.5, 1.5, HA).astype(np.float32),
         "nextn.pre_projection.weight": rng.standard_normal((HA, 2 * H), dtype=np.float32) / 8,
         "nextn.post_projection.weight": rng.standard_normal((H, HA), dtype=np.float32) / 4}
    for i in range(L_A):
        hd = HD_S if SWA_A[i] else HD_F
        p = f"blk.{i}."
        for n in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
            t[p + n + ".weight"] = rng.uniform(0.5, 1.5, HA).astype(np.float32)
        t[p + "attn_q.weight"] = rng.standard_normal((NH * hd, HA), dtype=np.float32) / 4
        t[p + "attn_q_norm.weight"] = rng.uniform(0.5, 1.5, hd).astype(np.float32)
        t[p + "attn_output.weight"] = rng.standard_normal((HA, NH * hd), dtype=np.float32) / 4
        t[p + "ffn_gate.weight"] = rng.standard_normal((FF_A, HA), dtype=np.float32) / 4
        t[p + "ffn_up.weight"] = rng.standard_normal((FF_A, HA), dtype=np.float32) / 4
        t[p + "ffn_down.weight"] = rng.standard_normal((HA, FF_A), dtype=np.float32) / 6
        t[p + "layer_output_scale.weight"] = rng.uniform(0.5, 1.5, 1).astype(np.float32)
    return t


def assistant_keys() -> dict[str, tuple]:
    a = "gemma4-assistant."
    return {
        a + "block_count": ("u32", L_A), a + "context_length": ("u32", 4096), a + "embedding_length": ("u32", HA),
        a + "embedding_length_out": ("u32", H), a + "nextn_predict_layers": ("u32", L_A),
        a + "feed_forward_length": ("u32", FF_A), a + "attention.head_count": ("u32", NH),
        a + "attention.head_count_kv": ("u32", NKV), a + "attention.key_length": ("u32", HD_F),
        a + "attention.value_length": ("u32", HD_F), a + "attention.key_length_swa": ("u32", HD_S),
        a + "attention.value_length_swa": ("u32", HD_S), a + "attention.layer_norm_rms_epsilon": ("f32", 1e-6),
        a + "attention.sliding_window": ("u32", 8), a + "attention.sliding_window_pattern": ("boolarr", SWA_A),
        a + "attention.shared_kv_layers": ("u32", L_A), a + "rope.freq_base": ("f32", 1e6),
        a + "rope.freq_base_swa": ("f32", 1e4),
        "tokenizer.ggml.model": ("str", "gemma4"),
        "tokenizer.ggml.tokens": ("strarr", [f"tok{i}" for i in range(V)]),
    }


def _write(path, arch, keys, tensors, drop_keys=(), drop_tensors=()):
    w = gguf.GGUFWriter(str(path), arch)
    for k, (kind, v) in keys.items():
        if k in drop_keys:
            continue
        if kind == "u32":
            w.add_uint32(k, v)
        elif kind == "i32arr":
            w.add_array(k, [int(x) for x in v])
        elif kind == "f32":
            w.add_float32(k, v)
        elif kind == "str":
            w.add_string(k, v)
        elif kind in ("strarr", "boolarr"):
            w.add_array(k, list(v))
    for name, arr in tensors.items():
        if name not in drop_tensors:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_assistant(path, drop_keys=(), key_overrides=None, drop_tensors=(), tensor_overrides=None, seed=1):
    """The sample drafter; overrides break one thing (the tensors as written are returned)."""
    keys = assistant_keys()
    keys.update(key_overrides or {})
    tensors = assistant_tensors(np.random.default_rng(seed))
    tensors.update(tensor_overrides or {})
    _write(path, "gemma4-assistant", keys, tensors, drop_keys, drop_tensors)
    return tensors


def write_centroids(path, key_overrides=None, tensor_overrides=None, seed=2):
    """Centroid side file of the sample drafter (our converter's layout): centroids [NC, HA]
    and a token ordering [V] (int32, a permutation)."""
    rng = np.random.default_rng(seed)
    c = "gemma4-assistant-centroids."
    keys = {c + "embedding_length": ("u32", HA), c + "vocab_size": ("u32", V), c + "num_centroids": ("u32", NC),
            c + "top_k": ("u32", TOPK)}
    keys.update(key_overrides or {})
    tensors = {"masked_embd_centroids.weight": rng.standard_normal((NC, HA), dtype=np.float32),
               "masked_embd_ordering": rng.permutation(V).astype(np.int32)}
    tensors.update(tensor_overrides or {})
    _write(path, "gemma4-assistant-centroids", keys, tensors)
    return tensors
