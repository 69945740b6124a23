"""The library's driver of the token loop: one ``SequenceState`` on the ``Model``'s own
context, evaluated with ``Context.eval`` (one token per step, or a speculative round's
[t, drafts] when a drafter is loaded and the sequence allows it).

A sampled token is evaluated only when the consumer asks for the next one, so the last token of
a run is not in the cache. Whatever happens (the consumer stops, Ctrl-C, a newer run on the
same model), the ``finally`` leaves ``model._cached`` equal to what the context holds.
"""
from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from ..generate import make_stats
from .events import Event
from .sequence import SequenceState


def _check(m, me: int) -> None:
    if m._run_id != me:
        raise RuntimeError("another generation started on this model; this stream cannot continue")


def run(m, prompt, state: SequenceState, draft_tokens=None) -> Iterator[Event]:
    """Generator of the events of ``state`` after ``prompt`` (a MediaPrompt) on model ``m``;
    returns the stats dict (also stored as ``m.last_stats``)."""
    m._run_id += 1
    me = m._run_id
    t0 = time.perf_counter()
    spec = None
    setting = m.draft_tokens if draft_tokens is None else draft_tokens
    if m.drafter is not None and setting != 0:
        from ..speculative import DraftLength, DraftStats

        spec = _Drafting(DraftLength(setting), DraftStats())
    if state.max_tokens == 0:
        reused = 0
        t1 = t0
        state.finish("length")
    else:
        row, reused = m._prefill(prompt)
        t1 = time.perf_counter()
        yield from _decode(m, me, prompt, state, row, spec)
    stats = make_stats(len(prompt.ids), reused, len(state.tokens), t1 - t0, time.perf_counter() - t1,
                       state.finish_reason, state.seed)
    if spec is not None and spec.passes:
        stats.update(spec.stats.as_dict(spec.emitted, spec.passes, spec.length.setting))
    m.last_stats = stats
    return stats


class _Drafting:
    def __init__(self, length, stats) -> None:
        self.length, self.stats = length, stats
        self.emitted = 0   # tokens handed out since the first round (tokens per target pass)
        self.passes = 0    # speculative target passes


def _decode(m, me: int, prompt, state: SequenceState, row: np.ndarray, spec: _Drafting | None) -> Iterator[Event]:
    """Step on the prefill row, then per token: a speculative round when a drafter is loaded and
    ``state.can_draft``, else evaluate the pending token and step on its row."""
    from ..speculative import speculative_round

    ctx, seq = m._ctx, m._cached
    h = None  # hidden row before the pending token, when a round left it (else ctx.last_hidden)
    try:
        for ev in state.step(row, seq):
            yield ev
            _check(m, me)
        while not state.finished:
            _check(m, me)
            if spec is not None and state.can_draft:
                k = state.draft_len(spec.length.k)
                if h is None:
                    h = ctx.last_hidden[-1].copy()  # post-norm hidden of the last evaluated token
                accepted, nxt, h = speculative_round(m.drafter, ctx, seq, state.last_token, h, k, state.sampler,
                                                     state.params.greedy, state.history_n, spec.stats)
                m.n_evaluated += k + 1
                spec.passes += 1
                spec.length.update(len(accepted), k)
                for t in accepted + [nxt]:
                    spec.emitted += 1
                    for ev in state.take(t):
                        yield ev
                        _check(m, me)
                    if state.finished:
                        break
                continue
            t = state.last_token
            seq.append(t)
            row = m._ctx.eval(np.asarray([t], dtype=np.int32))[0]
            m.n_evaluated += 1
            h = None
            if spec is not None and spec.passes:
                spec.emitted += 1
            for ev in state.step(row, seq):
                yield ev
                _check(m, me)
    finally:
        if m._run_id == me:
            # after a round the consumer may stop before taking every accepted draft: the
            # cache keeps at most the prompt and the tokens handed out (never a draft it did
            # not take); after an interrupt the context may hold fewer tokens than the list
            want = len(prompt.ids) + len(state.tokens)
            if ctx.n_past > want and not ctx.truncate(want):
                ctx.reset()
                seq.clear()
            del seq[ctx.n_past:]
