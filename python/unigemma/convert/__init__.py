"""Hugging Face Gemma 4 Unified checkpoint -> GGUF (text model, mmproj, MTP drafter).

Output follows llama.cpp's conventions (names, keys, transformations, per-tensor types), so
the files load in llama.cpp and llama.cpp's files load here. Tensors are streamed one at a
time: read from the mapped safetensors, transformed, quantized in C++ on all cores,
appended to a temporary file that is renamed into place only when complete."""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .. import _core
from .errors import ConversionError
from .hf_config import embedding_scale, load_config, model_kind, text_hparams
from .metadata import (general_info, write_assistant_metadata, write_centroid_metadata, write_mmproj_metadata,
                       write_text_metadata)
from .plan import FilePlan, plan_assistant, plan_target
from .quant_policy import OUTTYPES, choose_tensor_types, file_type_for, llama_quantize_order, quant_source_type
from .safetensors_io import Checkpoint
from .tokenizer_gguf import load_tokenizer

__all__ = ["convert", "ConversionError", "OUTTYPES", "ConvertResult"]


@dataclass
class ConvertResult:
    text: Path | None = None
    mmproj: Path | None = None
    assistant: Path | None = None
    centroids: Path | None = None  # the drafter's ordered-embedding head (side file)

    def paths(self) -> list[Path]:
        return [p for p in (self.text, self.mmproj, self.assistant, self.centroids) if p is not None]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"[convert] '{path}' is not valid JSON ({e})") from e


def _source_dtype(ck: Checkpoint, name: str) -> str:
    ref = ck.tensors.get(name)
    return ref.dtype if ref is not None else "F32"


def _encode(x: np.ndarray, ttype: str, f16_source: bool, threads: int) -> np.ndarray:
    """Tensor data in its GGUF type, as the bytes (or typed values) to write."""
    if ttype == "I32":
        return np.ascontiguousarray(x, dtype=np.int32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if ttype == "F32":
        return x
    if f16_source:
        # llama-quantize reads the F16 file: quantize the values it would have seen
        x = x.astype(np.float16).astype(np.float32)
    row = x.shape[-1] if x.ndim else 1
    return _core.quantize(x.reshape(-1, row), ttype, threads)


def _write_file(plan: FilePlan, out_path: Path, outtype: str, write_kv, threads: int, progress: bool) -> Path:
    policy_kind = "assistant" if plan.kind == "centroids" else plan.kind
    entries = [(t.name, t.ne) for t in plan.tensors]
    types = choose_tensor_types(entries, outtype, policy_kind)
    # llama-quantize parity (model files only): requantize the values of the f16 file, in
    # the order llama-quantize writes them
    requantize = quant_source_type(outtype) == "F16" and plan.kind in ("text", "assistant")
    f16_types = choose_tensor_types(entries, "f16", policy_kind) if requantize else {}
    if requantize:
        rank = {n: i for i, n in enumerate(llama_quantize_order([t.name for t in plan.tensors]))}
        plan.tensors.sort(key=lambda t: rank[t.name])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; the output is an ordinary file
    tmp = Path(tmp_name)
    try:
        w = gguf.GGUFWriter(tmp, plan.arch)
        write_kv(w)
        for t in plan.tensors:
            tt = types[t.name]
            if tt == "I32":
                w.add_tensor_info(t.name, t.shape, np.dtype(np.int32), int(np.prod(t.shape)) * 4)
            else:
                qt = gguf.GGMLQuantizationType[tt]
                block, size = gguf.GGML_QUANT_SIZES[qt]
                if t.shape[-1] % block:
                    raise ConversionError(f"[convert] tensor '{t.name}': row length {t.shape[-1]} does not fit {tt}")
                nbytes = int(np.prod(t.shape)) // block * size
                w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), nbytes, raw_dtype=qt)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        total = sum(int(np.prod(t.shape)) * 4 for t in plan.tensors)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=out_path.name, leave=True)
        for t in plan.tensors:
            x = t.load()
            if tuple(x.shape) != tuple(t.shape):
                raise ConversionError(f"[convert] tensor '{t.name}': loaded shape {list(x.shape)} != planned {list(t.shape)}")
            data = _encode(x, types[t.name], f16_types.get(t.name) == "F16", threads)
            w.write_tensor_data(data)
            del x, data
            if bar:
                bar.update(int(np.prod(t.shape)) * 4)
        if bar:
            bar.close()
        w.close()
        os.replace(tmp, out_path)
    except BaseException:
        try:
            w.close()  # type: ignore[possibly-undefined]
        except Exception:
            pass
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def convert(hf_dir, outtype: str = "f16", out_prefix=None, assistant_dir=None, threads: int = 0,
            progress: bool = True, name: str | None = None) -> ConvertResult:
    """Convert a checkpoint directory. Writes `{out_prefix}.gguf` (text model) and
    `{out_prefix}-mmproj.gguf` (vision+audio projector) for a target checkpoint, and
    `{out_prefix}-assistant.gguf` for `assistant_dir` (or for `hf_dir` if it is an assistant)."""
    if outtype not in OUTTYPES:
        raise ConversionError(f"[convert] unknown --outtype {outtype!r} (choose from {', '.join(OUTTYPES)})")
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ConversionError(f"[convert] '{hf_dir}' is not a directory")
    out_prefix = Path(out_prefix) if out_prefix else hf_dir.parent / f"{hf_dir.name}-{outtype}"
    result = ConvertResult()
    t0 = time.time()
    dirs = [(hf_dir, None)]
    if assistant_dir is not None:
        dirs.append((Path(assistant_dir), "assistant"))
    for d, want in dirs:
        config = load_config(d)
        kind = model_kind(config)
        if want == "assistant" and kind != "assistant":
            raise ConversionError(f"[convert] --assistant '{d}' is not a Gemma 4 Unified assistant checkpoint")
        tok = load_tokenizer(d, config)
        ck = Checkpoint(d)
        try:
            n_tok = len(tok.tokens)
            model_name = general_info(d, name)
            if kind == "target":
                tc = config.get("text_config")
                if not isinstance(tc, dict):
                    raise ConversionError(f"[convert] '{d}/config.json' has no text_config")
                hp = text_hparams(tc)
                text_plan, mm_plan = plan_target(ck, config, hp, n_tok)
                dtype = _source_dtype(ck, "model.language_model.embed_tokens.weight")
                scale = embedding_scale(hp.hidden, dtype)
                suppress = _read_json(d / "generation_config.json").get("suppress_tokens")
                ft = file_type_for(outtype, "text")
                result.text = _write_file(
                    text_plan, Path(f"{out_prefix}.gguf"), outtype,
                    lambda w: write_text_metadata(w, model_name, ft, hp, tok, config, scale, dtype, suppress),
                    threads, progress)
                if mm_plan is not None:
                    preproc = _read_json(d / "preprocessor_config.json") or _read_json(d / "processor_config.json")
                    if "image_processor" in preproc and isinstance(preproc["image_processor"], dict):
                        preproc = {**preproc["image_processor"], **{k: v for k, v in preproc.items() if k != "image_processor"}}
                    result.mmproj = _write_file(
                        mm_plan, Path(f"{out_prefix}-mmproj.gguf"), outtype,
                        lambda w: write_mmproj_metadata(w, model_name, file_type_for(outtype, "mmproj"), config,
                                                        hp.hidden, preproc),
                        threads, progress)
            else:
                tc = config.get("text_config")
                if not isinstance(tc, dict):
                    raise ConversionError(f"[convert] '{d}/config.json' has no text_config")
                hp = text_hparams(tc, "assistant text_config", force_all_shared=True)
                plan, centroid_plan = plan_assistant(ck, config, hp, n_tok)
                dtype = _source_dtype(ck, "model.embed_tokens.weight")
                scale = embedding_scale(int(config.get("backbone_hidden_size", 3840)), dtype)
                ft = file_type_for(outtype, "assistant")
                stem = f"{out_prefix}-assistant" if (want or result.text) else f"{out_prefix}"
                result.assistant = _write_file(
                    plan, Path(f"{stem}.gguf"), outtype,
                    lambda w: write_assistant_metadata(w, model_name, ft, hp, tok, config, scale, dtype),
                    threads, progress)
                if centroid_plan is not None:
                    # llama.cpp refuses a drafter file that holds the centroid tensors, so
                    # they go to a side file next to it (reference decision 5)
                    result.centroids = _write_file(
                        centroid_plan, Path(f"{stem}-centroids.gguf"), outtype,
                        lambda w: write_centroid_metadata(w, model_name, ft, hp, config),
                        threads, progress)
        finally:
            ck.close()
    if progress:
        mb = sum(p.stat().st_size for p in result.paths()) / 2**20
        dt = max(time.time() - t0, 1e-9)
        print(f"wrote {', '.join(str(p) for p in result.paths())} ({mb:.1f} MiB in {dt:.1f} s, {mb / dt:.1f} MiB/s)")
    return result
