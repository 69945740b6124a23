"""What a generation reports while it runs: ``Event`` tuples, per-token log-probabilities, and
the one finish-reason vocabulary used by library results, stream events and the server.

Events are ``Event(kind, value)`` named 2-tuples (they unpack and compare like plain tuples):

    ("token", TokenLogprob)          a sampled token, only when ``logprobs`` was asked for
    ("text", str)                    generated text (``generate``: no chat parser)
    ("content", str)                 chat: the visible answer
    ("thinking", str)                chat: the reasoning channel
    ("tool_call", {"name", "arguments"})   chat: one parsed tool call

Finish reasons (OpenAI's names):

    "stop"        an end-of-generation / end-of-turn token, a stop string, or a complete
                  ``response_format`` value
    "length"      max_tokens (or the end of the context) reached
    "tool_calls"  chat: the reply holds at least one parsed tool call
    "cancelled"   the consumer stopped it (server: the client went away)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

FINISH_REASONS = ("stop", "length", "tool_calls", "cancelled")


class Event(NamedTuple):
    kind: str
    value: Any


@dataclass
class TokenLogprob:
    """A sampled token under the model's distribution (log-softmax of the raw logits, float64,
    before constraint masks and sampler filters). top_logprobs: the k most likely tokens as
    [(id, logprob)], most likely first."""

    id: int
    logprob: float
    top_logprobs: list = field(default_factory=list)


def log_softmax(row: np.ndarray) -> np.ndarray:
    """float64 [n_vocab] log-probabilities of a float32 logits row (max-shifted: exp of the
    shifted row is <= 1, so the sum cannot overflow)."""
    x = row.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def top_logprobs(lp: np.ndarray, k: int) -> list:
    """The k most likely (id, logprob) of log-probabilities ``lp``; ties keep the lower id
    first (a stable sort of an argpartition)."""
    if k <= 0:
        return []
    idx = np.argpartition(-lp, k)[:k] if k < lp.size else np.arange(lp.size)
    idx = idx[np.argsort(-lp[idx], kind="stable")]
    return [(int(i), float(lp[i])) for i in idx]


def final_finish_reason(reason: str, n_tool_calls: int) -> str:
    """The reported reason: a reply with tool calls finishes with "tool_calls" unless it was
    cancelled."""
    if reason not in FINISH_REASONS:
        raise ValueError(f"unknown finish reason {reason!r}")
    return "tool_calls" if n_tool_calls and reason != "cancelled" else reason
