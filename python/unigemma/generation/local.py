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
    if state.max_tokens == 0:
        reused = 0
        t1 = t0
        state.finish("length")
    else:
        row, reused = m._prefill(prompt)
        t1 = time.perf_counter()
        setting = m.draft_tokens if draft_tokens is None else draft_tokens
        if m.drafter is not None and setting != 0 and state.can_draft:
            from ..speculative import DraftLength, DraftStats

            spec = (DraftLength(setting), DraftStats(), [0, 0])  # [tokens handed out, target passes]
            yield from _speculative(m, me, prompt, state, row, *spec)
        else:
            yield from _plain(m, me, state, row)
    stats = make_stats(len(prompt.ids), reused, len(state.tokens), t1 - t0, time.perf_counter() - t1,
                       state.finish_reason, state.seed)
    if spec is not None:
        length, ds, (emitted, passes) = spec
        stats.update(ds.as_dict(emitted, passes, length.setting))
    m.last_stats = stats
    return stats


def _plain(m, me: int, state: SequenceState, row: np.ndarray) -> Iterator[Event]:
    seq = m._cached
    try:
        while True:
            for ev in state.step(row, seq):
                yield ev
                _check(m, me)
            if state.finished:
                return
            _check(m, me)
            t = state.last_token
            seq.append(t)
            row = m._ctx.eval(np.asarray([t], dtype=np.int32))[0]
            m.n_evaluated += 1
    finally:
        if m._run_id == me:
            del seq[m._ctx.n_past:]  # after an interrupt the context may hold fewer tokens


def _speculative(m, me: int, prompt, state: SequenceState, row, length, ds, counts) -> Iterator[Event]:
    from ..speculative import speculative_round

    ctx, seq = m._ctx, m._cached
    h = ctx.last_hidden[-1].copy()  # post-norm hidden of the last prompt token
    try:
        counts[0] += 1
        for ev in state.step(row, seq):
            yield ev
            _check(m, me)
        while not state.finished:
            _check(m, me)
            k = max(1, min(length.k, state.max_tokens - len(state.tokens)))
            accepted, nxt, h = speculative_round(m.drafter, ctx, seq, state.last_token, h, k, state.sampler,
                                                 state.params.greedy, state.history_n, ds)
            m.n_evaluated += k + 1
            counts[1] += 1
            length.update(len(accepted), k)
            for t in accepted + [nxt]:
                counts[0] += 1
                for ev in state.take(t):
                    yield ev
                    _check(m, me)
                if state.finished:
                    break
    finally:
        if m._run_id == me:
            # the consumer may stop in the middle of a round: the cache keeps at most the
            # prompt and the tokens it received (never a draft it did not take)
            want = len(prompt.ids) + len(state.tokens)
            if ctx.n_past > want and not ctx.truncate(want):
                ctx.reset()
                seq.clear()
            del seq[ctx.n_past:]
