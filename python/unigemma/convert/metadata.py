"""GGUF metadata for the three output files, with llama.cpp's keys (shared/reference §2.1,
§3.1, §4.1) plus `unigemma.*` keys that keep what llama.cpp's keys cannot express."""
from __future__ import annotations

import json
from math import prod
from pathlib import Path

import gguf

from .hf_config import TextHparams

UNIGEMMA_CONVERTER_VERSION = 1

# Tensors we write but llama.cpp's converter drops: left out of the parameter count so that
# general.size_label is the one llama.cpp writes.
_NOT_COUNTED_PREFIXES = ("masked_embd_",)


class GeneralInfo:
    """The ``general.*`` keys llama.cpp's converter derives from a model directory.

    It uses the gguf package's ``Metadata`` heuristics, as ``convert_hf_to_gguf.py`` does:
    name / organization / basename / finetune / version / license / tags / base models from
    the README front matter, ``_name_or_path`` and the directory name (a ``--name`` override
    wins for ``general.name``), the ``general.sampling.*`` keys from
    ``generation_config.json``, and ``general.size_label`` from the parameter count of the
    tensors actually written.  Pass an instance instead of a plain name to the
    ``write_*_metadata`` functions; the keys are added when the header is written, i.e. once
    every tensor of the file is known."""

    def __init__(self, model_dir, name_override: str | None = None):
        self.model_dir = Path(model_dir)
        self.name_override = name_override

    def write(self, w, total_params: int) -> None:
        md = gguf.Metadata.load(None, self.model_dir, self.name_override, total_params)
        gen = _read_json(self.model_dir / "generation_config.json")
        # llama.cpp also reads the HF spelling (older gguf releases only read "penalty_repeat")
        if md.sampling_penalty_repeat is None and "repetition_penalty" in gen:
            md.sampling_penalty_repeat = gen["repetition_penalty"]
        if md.name is None:
            md.name = self.model_dir.name
        if md.size_label is None and total_params > 0:
            md.size_label = gguf.size_label(total_params, total_params, 0, 0)
        md.set_gguf_meta_model(w)


def general_info(model_dir, name_override: str | None = None) -> GeneralInfo:
    return GeneralInfo(model_dir, name_override)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _total_params(w) -> int:
    return sum(prod(info.shape) for tensors in w.tensors for name, info in tensors.items()
               if not name.startswith(_NOT_COUNTED_PREFIXES))


def _at_header(w, fn) -> None:
    """Run fn() right before the writer's header (which fixes the KV count) is written."""
    orig = w.write_header_to_file

    def write_header_to_file(*args, **kwargs):
        fn()
        return orig(*args, **kwargs)

    w.write_header_to_file = write_header_to_file


def _general(w, name, file_type: int | None):
    """name: a GeneralInfo (llama.cpp's derivation) or a plain string (written as is)."""
    if isinstance(name, GeneralInfo):
        _at_header(w, lambda: name.write(w, _total_params(w)))
    else:
        w.add_name(name)

        def size_label():
            total = _total_params(w)
            if total > 0:
                w.add_size_label(gguf.size_label(total, total, 0, 0))
        _at_header(w, size_label)
    if file_type is not None:
        w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_text_hparams(w, arch: str, hp: TextHparams):
    w.add_block_count(hp.n_layer)
    w.add_context_length(hp.n_ctx)
    w.add_embedding_length(hp.hidden)
    if len(set(hp.n_ff)) == 1:
        w.add_feed_forward_length(hp.n_ff[0])
    else:
        w.add_feed_forward_length(hp.n_ff)
    w.add_head_count(hp.n_head)
    if hp.n_kv_full is None:
        w.add_head_count_kv(hp.n_kv_swa)
    else:
        w.add_head_count_kv([hp.n_kv(i) for i in range(hp.n_layer)])
    w.add_rope_freq_base(hp.rope_theta_full)
    w.add_rope_freq_base_swa(hp.rope_theta_swa)
    w.add_layer_norm_rms_eps(hp.rms_eps)
    w.add_key_length(hp.head_dim_full)
    w.add_value_length(hp.head_dim_full)
    if hp.softcap:
        w.add_final_logit_softcapping(float(hp.softcap))
    w.add_sliding_window(hp.sliding_window)
    w.add_shared_kv_layers(hp.n_kv_shared)
    w.add_embedding_length_per_layer_input(0)
    w.add_sliding_window_pattern(hp.layer_is_swa)
    w.add_key_length_swa(hp.head_dim_swa)
    w.add_value_length_swa(hp.head_dim_swa)
    w.add_rope_dimension_count(hp.head_dim_full)
    w.add_rope_dimension_count_swa(hp.head_dim_swa)


def write_unigemma_keys(w, hp: TextHparams, config: dict, embed_scale: float, source_dtype: str):
    w.add_string("unigemma.converter_version", str(UNIGEMMA_CONVERTER_VERSION))
    w.add_string("unigemma.source.config", json.dumps(config, sort_keys=True))
    w.add_string("unigemma.source.dtype", source_dtype)
    w.add_float32("unigemma.embedding_scale", embed_scale)
    w.add_float32("unigemma.rope.partial_rotary_factor", hp.partial_rotary_full)
    if hp.rope_factor_full:
        w.add_float32("unigemma.rope.factor", float(hp.rope_factor_full))
    w.add_bool("unigemma.attention.k_eq_v", hp.k_eq_v)
    w.add_string("unigemma.attention.bidirectional", hp.bidirectional or "none")


def write_text_metadata(w, name, file_type, hp, tok, config, embed_scale, source_dtype, suppress_tokens):
    from .tokenizer_gguf import write_tokenizer

    _general(w, name, file_type)
    w.add_type(gguf.GGUFType.MODEL)
    write_text_hparams(w, "gemma4", hp)
    write_tokenizer(w, tok)
    if suppress_tokens is not None:
        w.add_array("tokenizer.ggml.suppress_tokens", [int(x) for x in suppress_tokens])
    for key in ("boi_token_id", "eoi_token_id", "image_token_id", "video_token_id", "boa_token_id",
                "eoa_token_index", "audio_token_id"):
        if isinstance(config.get(key), int):
            w.add_uint32(f"unigemma.token.{key}", config[key])
    write_unigemma_keys(w, hp, config, embed_scale, source_dtype)


def write_assistant_metadata(w, name, file_type, hp, tok, config, embed_scale, source_dtype):
    from .tokenizer_gguf import write_tokenizer

    _general(w, name, file_type)
    w.add_type(gguf.GGUFType.MODEL)
    write_text_hparams(w, "gemma4-assistant", hp)
    w.add_uint32("gemma4-assistant.embedding_length_out", int(config.get("backbone_hidden_size", 3840)))
    w.add_uint32("gemma4-assistant.nextn_predict_layers", hp.n_layer)
    write_tokenizer(w, tok)
    if config.get("use_ordered_embeddings"):
        w.add_uint32("unigemma.assistant.num_centroids", int(config.get("num_centroids", 2048)))
        w.add_uint32("unigemma.assistant.centroid_top_k", int(config.get("centroid_intermediate_top_k", 32)))
    write_unigemma_keys(w, hp, config, embed_scale, source_dtype)


def write_mmproj_metadata(w, name, file_type, config: dict, hidden: int, preproc: dict):
    vc, ac = config.get("vision_config"), config.get("audio_config")
    _general(w, name, file_type)
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_bool("clip.has_vision_encoder", bool(vc))
    w.add_bool("clip.has_audio_encoder", bool(ac))
    if vc:
        w.add_string("clip.vision.projector_type", "gemma4uv")
        w.add_uint32("clip.vision.projection_dim", hidden)
        w.add_uint32("clip.vision.embedding_length", int(vc.get("mm_embed_dim", 3840)))
        w.add_uint32("clip.vision.patch_size", int(vc.get("patch_size", 16)))
        w.add_uint32("clip.vision.image_size", 224)
        w.add_uint32("clip.vision.feed_forward_length", 0)
        w.add_uint32("clip.vision.block_count", 0)
        w.add_uint32("clip.vision.attention.head_count", 0)
        w.add_array("clip.vision.image_mean", [float(x) for x in preproc.get("image_mean", [0.0, 0.0, 0.0])])
        w.add_array("clip.vision.image_std", [float(x) for x in preproc.get("image_std", [1.0, 1.0, 1.0])])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", float(vc.get("layer_norm_eps", 1e-6)))
        w.add_uint32("unigemma.vision.pooling_kernel_size", int(vc.get("pooling_kernel_size", 3)))
        w.add_uint32("unigemma.vision.mm_posemb_size", int(vc.get("mm_posemb_size", 1120)))
        w.add_float32("unigemma.vision.rms_norm_eps", float(vc.get("rms_norm_eps", 1e-6)))
    if ac:
        w.add_string("clip.audio.projector_type", "gemma4ua")
        w.add_uint32("clip.audio.projection_dim", hidden)
        w.add_uint32("clip.audio.embedding_length", int(ac.get("audio_embed_dim", 640)))
        w.add_uint32("clip.audio.feed_forward_length", 0)
        w.add_uint32("clip.audio.block_count", 0)
        w.add_uint32("clip.audio.attention.head_count", 0)
        w.add_uint32("clip.audio.num_mel_bins", 128)
        w.add_float32("clip.audio.attention.layer_norm_epsilon", float(ac.get("layer_norm_eps", 1e-6)))
        w.add_float32("unigemma.audio.rms_norm_eps", float(ac.get("rms_norm_eps", 1e-6)))
    w.add_string("unigemma.source.config", json.dumps(config, sort_keys=True))
    if preproc:
        w.add_string("unigemma.source.preprocessor_config", json.dumps(preproc, sort_keys=True))


def write_centroid_metadata(w, name, file_type, hp: TextHparams, config: dict):
    """Side file of the drafter's ordered-embedding head: centroids [num_centroids, H_a] and
    the token ordering [V] (int32), read by unigemma next to `*-assistant.gguf`."""
    _general(w, name, file_type)
    w.add_uint32("gemma4-assistant-centroids.embedding_length", hp.hidden)
    w.add_uint32("gemma4-assistant-centroids.vocab_size", hp.vocab_size)
    w.add_uint32("gemma4-assistant-centroids.num_centroids", int(config.get("num_centroids", 2048)))
    w.add_uint32("gemma4-assistant-centroids.top_k", int(config.get("centroid_intermediate_top_k", 32)))
