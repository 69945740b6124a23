"""``SamplingParams``: every option that decides which tokens a generation produces, with its
default written once, validated on construction.

The library (``Model.generate`` / ``Model.chat``), the CLI and the server build one of these;
``generate`` / ``chat`` keyword arguments with the same names build one too. The server maps an
OpenAI request onto it (OpenAI's own defaults, e.g. temperature 1.0, are the HTTP API's choice
and live in ``server/openai_api.py``).
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Iterable

MAX_TOP_LOGPROBS = 20


def _number(name: str, v, lo: float, hi: float, integer: bool = False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {v!r}")
    if not lo <= v <= hi:  # NaN fails too
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {v!r}")
    return v


@dataclass(frozen=True)
class SamplingParams:
    """What to sample and when to stop.

    Sampling (``_core.Sampler``): temperature <= 0 is greedy; otherwise top_k (0: off), top_p,
    min_p, then the temperature. repetition_penalty (1: off), frequency_penalty and
    presence_penalty (0: off) look at the last ``penalty_last_n`` tokens, prompt included.
    seed: None draws a random one (reported in ``stats["seed"]``); the same seed, prompt and
    settings give the same tokens. logit_bias: {token id: added logit}.

    Stopping: ``max_tokens`` (None: up to the end of the context), the end-of-generation ids
    (``stop_tokens`` None: the tokenizer's, and for chat the format's end-of-turn ids; a list
    replaces that set, ``[]`` disables it), one of the ``stop`` strings (never in the output),
    or a ``response_format`` value that is complete.

    logprobs: report the log-probability of each sampled token under the model's distribution
    (log-softmax of the raw logits, before any constraint mask or sampler filter) and the
    ``top_logprobs`` (0..20) most likely alternatives.

    response_format: OpenAI's shape: ``{"type": "json_object"}`` (any JSON object),
    ``{"type": "json_schema", "json_schema": {"schema": {...}}}`` (a value valid under the
    schema; ``unigemma.constrained`` lists the supported subset) or ``{"type": "text"}`` / None
    (unconstrained).
    """

    max_tokens: int | None = None
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    logit_bias: dict | None = None
    stop: tuple = ()
    stop_tokens: tuple | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: dict | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass
        if self.max_tokens is not None:
            set_("max_tokens", int(_number("max_tokens", self.max_tokens, 0, float("inf"), integer=True)))
        set_("temperature", float(_number("temperature", self.temperature, -float("inf"), float("inf"))))
        set_("top_k", int(_number("top_k", self.top_k, 0, 1 << 31, integer=True)))
        set_("top_p", float(_number("top_p", self.top_p, 0.0, 1.0)))
        set_("min_p", float(_number("min_p", self.min_p, 0.0, 1.0)))
        inf = float("inf")
        set_("repetition_penalty", float(_number("repetition_penalty", self.repetition_penalty, 1e-6, inf)))
        set_("frequency_penalty", float(_number("frequency_penalty", self.frequency_penalty, -inf, inf)))
        set_("presence_penalty", float(_number("presence_penalty", self.presence_penalty, -inf, inf)))
        set_("penalty_last_n", int(_number("penalty_last_n", self.penalty_last_n, 0, 1 << 31, integer=True)))
        if self.seed is not None:
            set_("seed", int(_number("seed", self.seed, -(1 << 63), (1 << 64) - 1, integer=True)) & ((1 << 63) - 1))
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ValueError("logit_bias must be a dict {token id: bias}")
            try:
                bias = {int(k): float(v) for k, v in self.logit_bias.items()}
            except (TypeError, ValueError):
                raise ValueError("logit_bias keys must be token ids and values numbers") from None
            if any(math.isnan(v) for v in bias.values()):
                raise ValueError("logit_bias values must not be NaN")
            set_("logit_bias", bias or None)
        set_("stop", _strings(self.stop))
        if self.stop_tokens is not None:
            set_("stop_tokens", _ids("stop_tokens", self.stop_tokens))
        if not isinstance(self.logprobs, bool):
            raise ValueError(f"logprobs must be a boolean, got {self.logprobs!r}")
        set_("top_logprobs", int(_number("top_logprobs", self.top_logprobs, 0, MAX_TOP_LOGPROBS, integer=True)))
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
        rf = self.response_format
        if rf is not None:
            if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
                raise ValueError("response_format must be {'type': 'text' | 'json_object' | 'json_schema', ...}, "
                                 f"got {rf!r}"[:300])
            if rf["type"] == "text":
                set_("response_format", None)

    @classmethod
    def build(cls, params: "SamplingParams | None" = None, **overrides: Any) -> "SamplingParams":
        """``params`` (default: all defaults) with the given fields replaced; an unknown name
        raises TypeError, as an unknown keyword argument does."""
        unknown = set(overrides) - FIELDS
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))} "
                            f"(sampling options: {', '.join(sorted(FIELDS))})")
        base = params if params is not None else cls()
        if not isinstance(base, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, not {type(base).__name__}")
        return dataclasses.replace(base, **overrides) if overrides else base

    @property
    def greedy(self) -> bool:
        return not self.temperature > 0.0

    @property
    def penalized(self) -> bool:
        """Whether the penalties need the token history."""
        return self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0

    def make_sampler(self, n_vocab: int):
        """(``_core.Sampler``, the seed it uses): a random seed when ``seed`` is None."""
        from .. import _core

        seed = random.SystemRandom().getrandbits(63) if self.seed is None else self.seed
        s = _core.Sampler(n_vocab, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                          min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                          frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
                          penalty_last_n=self.penalty_last_n, seed=seed, logit_bias=self.logit_bias)
        return s, seed


FIELDS = frozenset(f.name for f in dataclasses.fields(SamplingParams))


def _strings(stop) -> tuple:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, (bytes, dict)) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop must be a string or a list of strings")
    return tuple(s for s in stop if s)


def _ids(name: str, ids: Iterable) -> tuple:
    try:
        out = tuple(int(t) for t in ids)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of token ids") from None
    return out
