"""``SequenceState``: the one token loop of unigemma, as the state of one generating sequence.

Whoever owns a KV cache drives it: after evaluating the last token it hands the logits row to
``step`` and gets back the events that token produced; ``last_token`` is then the token to
evaluate next (it is not in the cache yet), until ``finished``.

    Model.generate / Model.chat   generation/local.py: ``Context.eval``, one sequence
    unigemma serve                server/engine.py: ``_core.decode_batch``, one row per slot
    speculative rounds            both drivers: the tokens a round verified go to ``take``

One step, for a logits row (float32 [n_vocab], the distribution after the last cached token):

    forced prefix token left?      take it (e.g. ``<|tool_call>call:NAME`` of a forced call)
    constraint done?               take the next forced suffix token (``<tool_call|>``)
    else                           logprobs of the raw row (when asked) -> constraint mask ->
                                   sampler (penalties over the cache's last tokens) -> take

``take(token)`` applies the stop rules in this order: an end-of-generation id ends the run
(the token is not part of the output), else the token is kept, its piece goes through the
``TextAssembler`` (UTF-8 and stop strings) and the chat parser; a stop string, the end of the
chat turn or a complete constraint value ends it with "stop", ``max_tokens`` with "length".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..generate import TextAssembler
from .cache import history_ids
from .events import Event, TokenLogprob, final_finish_reason, log_softmax, top_logprobs
from .params import SamplingParams


class SequenceState:
    """One generation's token-level state (see the module docstring).

    sampler:     ``_core.Sampler``-like (``sample(row, history)``; speculative rounds also use
                 ``probs`` / ``draw`` / ``uniform``); ``seed``: the seed it was made with.
    stop_ids:    token ids that end the generation.
    special:     spell control tokens in the text (chat: the parser reads the markers).
    parser:      a chat stream parser (feed / flush / finish / stopped_by) or None (plain text).
    constraint:  JsonConstraint-like (mask_logits, accept, done) or None.
    prefix_tokens / suffix_tokens: forced output tokens before the constrained part and after
                 it is done.
    """

    def __init__(self, tokenizer, params: SamplingParams, sampler, seed: int, *, max_tokens: int,
                 stop_ids, special: bool, parser=None, constraint=None, prefix_tokens=(), suffix_tokens=()) -> None:
        self.tokenizer, self.params, self.sampler, self.seed = tokenizer, params, sampler, int(seed)
        self.max_tokens = int(max_tokens)
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.special, self.parser, self.constraint = special, parser, constraint
        self.prefix_tokens, self.suffix_tokens = list(prefix_tokens), list(suffix_tokens)
        self.history_n = params.penalty_last_n if params.penalized else 0
        self.asm = TextAssembler(params.stop)
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs else None
        self.text: list[str] = []            # the "text" events' strings (no parser)
        self.chat: dict | None = None        # parser.finish() once finished
        self.finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def last_token(self) -> int | None:
        """The token to evaluate next (not in the cache), None once finished."""
        return None if self.finished or not self.tokens else self.tokens[-1]

    @property
    def can_draft(self) -> bool:
        """Whether a speculative round may produce the next tokens: only plain sampling (a round
        verifies tokens with the sampler alone: no mask, no forced tokens, no logprobs). Both
        drivers follow this rule and ``draft_len``, so a seeded sampled run draws the same
        random numbers in the library and the server."""
        return (not self.finished and self.constraint is None and self.logprobs is None
                and not self.prefix_tokens and not self.suffix_tokens)

    def draft_len(self, k: int) -> int:
        """A round's draft count for a preferred k: never past max_tokens (a round hands out up
        to k + 1 tokens, the last one is not evaluated, so the context needs no extra room)."""
        return max(1, min(k, self.max_tokens - len(self.tokens)))

    def history(self, keys) -> list[int]:
        """The penalties' history: the last ``penalty_last_n`` ids of the cache keys ``keys``."""
        return history_ids(keys, self.history_n)

    # -- one step ----------------------------------------------------------------------------------
    def step(self, row: np.ndarray, keys) -> list[Event]:
        """The next token from ``row`` (the logits after the last key of ``keys``, which are the
        cache's keys) and the events it produced."""
        if self.finished:
            raise RuntimeError("step() on a finished sequence")
        if self.prefix_tokens:
            return self.take(self.prefix_tokens.pop(0))
        info = None
        if self.logprobs is not None:
            lp = log_softmax(row)  # the model's distribution, before any mask
            info = TokenLogprob(-1, 0.0, top_logprobs(lp, self.params.top_logprobs))
        c = self.constraint
        if c is not None:
            if c.done:
                if self.suffix_tokens:
                    return self.take(self.suffix_tokens.pop(0))
                return self.finish("stop")
            row = np.array(row, dtype=np.float32, copy=True)
            c.mask_logits(row)
        t = int(self.sampler.sample(row, self.history(keys)))
        if c is not None:
            c.accept(t)
        if info is not None:
            info.id, info.logprob = t, float(lp[t])
        return self.take(t, info)

    def take(self, t: int, info: TokenLogprob | None = None) -> list[Event]:
        """Hand token ``t`` to the sequence (sampled by ``step`` or verified by a speculative
        round) and apply the stop rules."""
        if self.finished:
            raise RuntimeError("take() on a finished sequence")
        t = int(t)
        if t in self.stop_ids:
            return self.finish("stop")
        self.tokens.append(t)
        events = []
        if info is not None:
            self.logprobs.append(info)
            events.append(Event("token", info))
        events += self._text(self.asm.push(self.tokenizer.token_to_piece(t, special=self.special)))
        c = self.constraint
        if self.asm.stopped is not None or (self.parser is not None and self.parser.stopped_by is not None):
            events += self.finish("stop")
        elif c is not None and c.done and not self.suffix_tokens and not self.prefix_tokens:
            events += self.finish("stop")
        elif len(self.tokens) >= self.max_tokens:
            events += self.finish("length")
        return events

    def finish(self, reason: str) -> list[Event]:
        """End the sequence: the held-back text and the parser's pending events come out."""
        events = self._text(self.asm.flush())
        n_calls = 0
        if self.parser is not None:
            events += [Event(*ev) for ev in self.parser.flush()]
            self.chat = self.parser.finish()
            n_calls = len(self.chat["tool_calls"])
        self.finish_reason = final_finish_reason(reason, n_calls)
        return events

    def cancel(self) -> None:
        """Stop without flushing (nobody reads the rest)."""
        if not self.finished:
            self.finish_reason = "cancelled"

    def _text(self, text: str) -> list[Event]:
        if not text:
            return []
        if self.parser is None:
            self.text.append(text)
            return [Event("text", text)]
        return [Event(*ev) for ev in self.parser.feed(text)]


@dataclass
class PreparedGeneration:
    """A tokenized prompt and everything needed to start generating after it, built by
    ``Model.prepare_generate`` / ``Model.prepare_chat``.

    prompt:  ``multimodal.MediaPrompt`` (ids, cache keys, soft-token rows and kinds).
    params:  the SamplingParams.
    start(max_tokens) -> SequenceState: a fresh state (seeded sampler, constraint, parser);
             max_tokens: the budget after fitting the prompt into a context.
    """

    prompt: Any
    params: SamplingParams
    start: Callable[[int], SequenceState]
