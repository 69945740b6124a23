"""Which tensors go into which GGUF file, under which name, through which transformation.

A plan is built from the config and the checkpoint's tensor headers alone (no data read),
so every name and shape is checked before the output file is created."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import ConversionError
from .hf_config import TextHparams
from .safetensors_io import Checkpoint, TensorRef

# HF per-layer suffix -> GGUF per-layer name
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "layer_scalar": "layer_output_scale.weight",
}


@dataclass
class PlannedTensor:
    name: str                      # GGUF name
    shape: tuple[int, ...]         # NumPy order (reverse of GGUF ne)
    load: Callable[[], np.ndarray]  # float32 (or int32 for index tensors), in `shape`
    source: str = ""               # HF name(s), for messages
    integer: bool = False

    @property
    def ne(self) -> tuple[int, ...]:
        return tuple(reversed(self.shape))


@dataclass
class FilePlan:
    kind: str                      # "text" | "mmproj" | "assistant"
    arch: str
    tensors: list[PlannedTensor] = field(default_factory=list)
    kv: Callable | None = None     # writes metadata: kv(writer)


def _expect(ref: TensorRef, shape: tuple, why: str):
    if tuple(ref.shape) != tuple(shape):
        raise ConversionError(f"[convert] tensor '{ref.name}': shape {list(ref.shape)} does not match the config "
                              f"({why}: expected {list(shape)})")


def _loader(ref: TensorRef, fn: Callable[[np.ndarray], np.ndarray] | None = None):
    def load():
        x = ref.to_float32()
        return np.ascontiguousarray(fn(x) if fn else x)
    return load


def _layer_tensors(ck: Checkpoint, prefix: str, hp: TextHparams, drafter: bool, used: set) -> list[PlannedTensor]:
    out = []
    H = hp.hidden
    for i in range(hp.n_layer):
        hd, nkv, ff = hp.head_dim(i), hp.n_kv(i), hp.n_ff[i]
        expected = {
            "input_layernorm.weight": (H,), "post_attention_layernorm.weight": (H,),
            "pre_feedforward_layernorm.weight": (H,), "post_feedforward_layernorm.weight": (H,),
            "self_attn.q_proj.weight": (hp.n_head * hd, H), "self_attn.q_norm.weight": (hd,),
            "self_attn.o_proj.weight": (H, hp.n_head * hd),
            "mlp.gate_proj.weight": (ff, H), "mlp.up_proj.weight": (ff, H), "mlp.down_proj.weight": (H, ff),
            "layer_scalar": (1,),
        }
        optional = {"layer_scalar"}
        if not drafter and hp.owns_kv(i):
            expected["self_attn.k_proj.weight"] = (nkv * hd, H)
            expected["self_attn.k_norm.weight"] = (hd,)
            if not (hp.k_eq_v and not hp.layer_is_swa[i]):
                expected["self_attn.v_proj.weight"] = (nkv * hd, H)
        for suffix, shape in expected.items():
            hf = f"{prefix}layers.{i}.{suffix}"
            ref = ck.tensors.get(hf)
            if ref is None:
                if suffix in optional and not drafter:
                    continue
                raise ConversionError(f"[convert] missing tensor '{hf}' (layer {i}, "
                                      f"{'sliding' if hp.layer_is_swa[i] else 'full'} attention)")
            _expect(ref, shape, f"layer {i}")
            used.add(hf)
            out.append(PlannedTensor(f"blk.{i}.{LAYER_MAP[suffix]}", tuple(shape), _loader(ref), hf))
    return out


def _check_unused(ck: Checkpoint, used: set, what: str):
    extra = sorted(set(ck.tensors) - used)
    if extra:
        raise ConversionError(f"[convert] {what}: {len(extra)} tensor(s) not understood by the converter, e.g. "
                              f"'{extra[0]}' (refusing to drop weights silently)")


def plan_target(ck: Checkpoint, config: dict, hp: TextHparams, n_vocab_tokens: int) -> tuple[FilePlan, FilePlan | None]:
    used: set = set()
    pre = "model.language_model."
    text = FilePlan("text", "gemma4")
    H = hp.hidden
    emb = ck.tensors.get(pre + "embed_tokens.weight")
    if emb is None:
        raise ConversionError(f"[convert] missing tensor '{pre}embed_tokens.weight'")
    if emb.shape[1:] != (H,) or emb.shape[0] < n_vocab_tokens:
        raise ConversionError(f"[convert] tensor '{emb.name}': shape {list(emb.shape)} does not fit hidden_size {H} "
                              f"and the tokenizer's {n_vocab_tokens} tokens")
    used.add(emb.name)
    text.tensors.append(PlannedTensor("rope_freqs.weight", (hp.head_dim_full // 2,),
                                      lambda: hp.rope_freq_factors(), "generated"))
    # the table keeps one row per tokenizer token (llama.cpp requires the counts to agree)
    text.tensors.append(PlannedTensor("token_embd.weight", (n_vocab_tokens, H),
                                      _loader(emb, lambda x: x[:n_vocab_tokens]), emb.name))
    head = ck.tensors.get("lm_head.weight")
    if head is not None and not config.get("tie_word_embeddings", True):
        _expect(head, emb.shape, "output head")
        used.add(head.name)
        text.tensors.append(PlannedTensor("output.weight", (n_vocab_tokens, H),
                                          _loader(head, lambda x: x[:n_vocab_tokens]), head.name))
    elif head is not None:
        used.add(head.name)  # tied: identical to the embedding, llama.cpp writes no output.weight
    norm = ck.tensors.get(pre + "norm.weight")
    if norm is None:
        raise ConversionError(f"[convert] missing tensor '{pre}norm.weight'")
    _expect(norm, (H,), "final norm")
    used.add(norm.name)
    text.tensors.append(PlannedTensor("output_norm.weight", (H,), _loader(norm), norm.name))
    text.tensors += _layer_tensors(ck, pre, hp, drafter=False, used=used)
    llama_cpp_order(text, ck)

    mm = None
    vc, ac = config.get("vision_config"), config.get("audio_config")
    if vc or ac:
        mm = FilePlan("mmproj", "clip")
    if vc:
        mm.tensors += _vision_tensors(ck, vc, H, used)
    if ac:
        ref = ck.tensors.get("model.embed_audio.embedding_projection.weight")
        n = int(ac.get("audio_embed_dim", 640))
        if ref is None:
            raise ConversionError("[convert] missing tensor 'model.embed_audio.embedding_projection.weight'")
        _expect(ref, (H, n), "audio projection")
        used.add(ref.name)
        mm.tensors.append(PlannedTensor("mm.a.input_projection.weight", (H, n), _loader(ref), ref.name))
    if mm is not None:
        llama_cpp_order(mm, ck)
    _check_unused(ck, used, "target checkpoint")
    return text, mm


def vision_patch_size(vc: dict) -> int:
    return int(vc.get("model_patch_size") or int(vc.get("patch_size", 16)) * int(vc.get("pooling_kernel_size", 3)))


def _hwc_to_chw_perm(p: int) -> np.ndarray:
    """perm[i] = HWC index of the pixel at CHW position i (i = ch*p*p + row*p + col)."""
    i = np.arange(p * p * 3)
    ch, row, col = i // (p * p), (i % (p * p)) // p, i % p
    return (row * p + col) * 3 + ch


def _vision_tensors(ck: Checkpoint, vc: dict, H: int, used: set) -> list[PlannedTensor]:
    p = vision_patch_size(vc)
    n_in = p * p * 3
    D = int(vc.get("mm_embed_dim", 3840))
    P = int(vc.get("mm_posemb_size", 1120))
    if int(vc.get("output_proj_dims", D)) != D:
        raise ConversionError("[convert] vision_config.output_proj_dims must equal mm_embed_dim")
    perm = _hwc_to_chw_perm(p)
    pre = "model.vision_embedder."
    spec = [  # (hf name, gguf name, hf shape, transform on the float32 array)
        (pre + "patch_ln1.weight", "v.patch_norm.1.weight", (n_in,), lambda x: x[perm]),
        (pre + "patch_ln1.bias", "v.patch_norm.1.bias", (n_in,), lambda x: x[perm]),
        (pre + "patch_dense.weight", "v.patch_embd.weight", (D, n_in), lambda x: x[:, perm]),
        (pre + "patch_dense.bias", "v.patch_embd.bias", (D,), None),
        (pre + "patch_ln2.weight", "v.patch_norm.2.weight", (D,), None),
        (pre + "patch_ln2.bias", "v.patch_norm.2.bias", (D,), None),
        # [P, 2, D] -> [2, P, D]: first the x (column) table, then the y (row) table
        (pre + "pos_embedding", "v.position_embd.weight", (P, 2, D), lambda x: x.transpose(1, 0, 2)),
        (pre + "pos_norm.weight", "v.patch_norm.3.weight", (D,), None),
        (pre + "pos_norm.bias", "v.patch_norm.3.bias", (D,), None),
        ("model.embed_vision.embedding_projection.weight", "mm.input_projection.weight", (H, D), None),
    ]
    out = []
    for hf, name, shape, fn in spec:
        ref = ck.tensors.get(hf)
        if ref is None:
            raise ConversionError(f"[convert] missing tensor '{hf}'")
        _expect(ref, shape, "vision embedder")
        used.add(hf)
        out_shape = (2, P, D) if name == "v.position_embd.weight" else shape
        out.append(PlannedTensor(name, out_shape, _loader(ref, fn), hf))
    return out


def llama_cpp_order(plan: FilePlan, ck: Checkpoint):
    """llama.cpp's converter order: generated tensors first, then shard by shard (index
    order), by HF name within a shard."""
    shard_rank = {id(s): i for i, s in enumerate(ck.shards)}

    def key(t: PlannedTensor):
        ref = ck.tensors.get(t.source)
        return (0, 0, "") if ref is None else (1, shard_rank[id(ref.shard)], t.source)
    plan.tensors.sort(key=key)


def plan_assistant(ck: Checkpoint, config: dict, hp: TextHparams, n_vocab_tokens: int
                   ) -> tuple[FilePlan, FilePlan | None]:
    """The drafter file and, with use_ordered_embeddings, the side file of its centroid head."""
    used: set = set()
    plan = FilePlan("assistant", "gemma4-assistant")
    H = hp.hidden
    Ht = int(config.get("backbone_hidden_size", 3840))
    emb = ck.tensors.get("model.embed_tokens.weight")
    if emb is None:
        raise ConversionError("[convert] missing tensor 'model.embed_tokens.weight' in the assistant")
    if emb.shape[1:] != (H,) or emb.shape[0] < n_vocab_tokens:
        raise ConversionError(f"[convert] tensor '{emb.name}': shape {list(emb.shape)} does not fit hidden_size {H}")
    used.add(emb.name)
    plan.tensors.append(PlannedTensor("rope_freqs.weight", (hp.head_dim_full // 2,),
                                      lambda: hp.rope_freq_factors(), "generated"))
    plan.tensors.append(PlannedTensor("token_embd.weight", (n_vocab_tokens, H),
                                      _loader(emb, lambda x: x[:n_vocab_tokens]), emb.name))
    if "lm_head.weight" in ck.tensors:
        used.add("lm_head.weight")
    for hf, name, shape in (("model.norm.weight", "output_norm.weight", (H,)),
                            ("pre_projection.weight", "nextn.pre_projection.weight", (H, 2 * Ht)),
                            ("post_projection.weight", "nextn.post_projection.weight", (Ht, H))):
        ref = ck.tensors.get(hf)
        if ref is None:
            raise ConversionError(f"[convert] missing tensor '{hf}' in the assistant")
        _expect(ref, shape, "assistant")
        used.add(hf)
        plan.tensors.append(PlannedTensor(name, shape, _loader(ref), hf))
    plan.tensors += _layer_tensors(ck, "model.", hp, drafter=True, used=used)
    llama_cpp_order(plan, ck)
    centroids = None
    if config.get("use_ordered_embeddings"):
        centroids = FilePlan("centroids", "gemma4-assistant-centroids")
        nc = int(config.get("num_centroids", 2048))
        c = ck.tensors.get("masked_embedding.centroids.weight")
        o = ck.tensors.get("masked_embedding.token_ordering")
        if c is None or o is None:
            raise ConversionError("[convert] use_ordered_embeddings is set but masked_embedding.centroids.weight / "
                                  "masked_embedding.token_ordering are missing")
        _expect(c, (nc, H), "centroids")
        if o.shape != (hp.vocab_size,) or hp.vocab_size % nc != 0:
            raise ConversionError(f"[convert] tensor '{o.name}': shape {list(o.shape)} does not fit vocab_size "
                                  f"{hp.vocab_size} / {nc} centroids")
        used.update({c.name, o.name})
        centroids.tensors.append(PlannedTensor("masked_embd_centroids.weight", (nc, H), _loader(c), c.name))

        def load_ordering(o=o):
            x = o.raw().copy()
            o.release()
            if x.min() < 0 or x.max() >= hp.vocab_size:
                raise ConversionError(f"[convert] tensor '{o.name}': token ids outside [0, {hp.vocab_size})")
            return x.astype(np.int32)
        centroids.tensors.append(PlannedTensor("masked_embd_ordering", (hp.vocab_size,), load_ordering, o.name,
                                               integer=True))
    else:
        used.update(k for k in ck.tensors if k.startswith("masked_embedding."))
    _check_unused(ck, used, "assistant checkpoint")
    return plan, centroids
