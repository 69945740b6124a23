"""Continuous-batching engine of ``unigemma serve``: N slots share one loaded model.

Each slot owns a ``_core.Context`` (its own KV cache of ``n_ctx`` positions) and remembers the
tokens it holds, so a request that continues a conversation reuses the common prefix (the slot
with the longest common prefix is chosen; see ``Engine._pick_slot``). One scheduler thread runs
the loop below; all model compute happens in C++ with the GIL released, so the HTTP event loop
keeps serving while the model runs.

    loop:
      admit queued requests into free slots (prefix match, truncate the rest of the cache)
      for each slot still evaluating its prompt: evaluate one chunk of <= n_ubatch tokens
          (an image block is never split); after the last chunk, sample the first token
      decode step: the pending token of every generating slot in ONE forward pass
          (_core.decode_batch: each weight matrix is read once for all slots), then each slot
          hands its own row of logits to its request's SequenceState; with a drafter loaded
          and one slot generating, a speculative round instead (draft, verify, roll back)

The token-level work (sampling, constraint masks, forced tokens, stop rules, text and chat
parsing, logprobs) is the library's: each request carries a ``generation.SequenceState``
(``Model.prepare_chat`` / ``prepare_generate`` + ``PreparedGeneration.start``), the same one
``Model.generate`` / ``Model.chat`` drive one token at a time, so a request's tokens equal the
library's for the same SamplingParams. This file only schedules and batches.

A row of ``decode_batch`` is bitwise what a single-sequence decode returns, so a request's
output does not depend on what else is running (seeded sampling is reproducible under load).

Requests talk to the outside through a ``sink(event)`` callable, called on the engine thread:
    ("started", slot index)                        the request left the queue
    the SequenceState's events (generation/events.py): ("token", TokenLogprob) only when
        logprobs were asked for; ("text", str) | ("content", str) | ("thinking", str) |
        ("tool_call", {"name", "arguments"})
    ("done", {"finish_reason", "usage", "result", "ttft_s"})   result: parser.finish() dict or None
    ("error", Exception)
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import _core
from ..generation.cache import common_prefix, resume_point
from ..generation.sequence import PreparedGeneration, SequenceState
from ..speculative import DraftLength, speculative_round


class QueueFullError(Exception):
    """The bounded request queue is full (HTTP 429)."""


class EngineStoppedError(Exception):
    """The engine is shutting down or its thread died (HTTP 503)."""


@dataclass
class EngineRequest:
    """A prompt and the SequenceState that generates after it (``PreparedGeneration.start``)."""

    ids: list[int]                      # prompt token ids
    keys: list                          # cache keys of the prompt (ids; media positions carry their hash)
    embeddings: Any                     # float32 [n, n_embd] or None (multimodal rows)
    kinds: Any                          # int8 [n] or None
    state: SequenceState
    sink: Callable[[tuple], None] | None = None
    reused: int = 0
    cancelled: bool = False
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float | None = None

    @classmethod
    def from_prepared(cls, prep: PreparedGeneration, max_tokens: int, n_embd: int, sink=None) -> "EngineRequest":
        mp = prep.prompt
        emb, kinds = mp.slice_inputs(0, n_embd)
        return cls(ids=list(mp.ids), keys=list(mp.keys), embeddings=emb, kinds=kinds, state=prep.start(max_tokens),
                   sink=sink)

    @property
    def tokens(self) -> list[int]:
        return self.state.tokens

    def cancel(self) -> None:
        """Stop generating (client gone); the engine frees the slot at its next step."""
        self.cancelled = True


class _Slot:
    def __init__(self, index: int, ctx) -> None:
        self.index, self.ctx = index, ctx
        self.cached: list = []          # cache keys the context holds, in order
        self.req: EngineRequest | None = None
        self.state = "idle"             # idle | prefill | decode
        self.pos = 0                    # prefill: next prompt index to evaluate
        self.pending: int | None = None  # decode: sampled token not yet in the cache
        self.n_counted = 0              # the request's tokens counted in stats["completion_tokens"]
        self.last_used = 0.0
        self.draft: DraftLength | None = None  # the request's draft length (as the library's)
        self.h = None                   # after a round: the hidden row of the last kept token


class Engine:
    """The slots, the bounded queue and the scheduler thread (see the module docstring)."""

    def __init__(self, model, n_parallel: int = 4, n_ctx: int = 4096, max_queue: int = 64,
                 queue_timeout: float = 120.0, reserve_kv: bool = True) -> None:
        if n_parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {n_parallel}")
        if max_queue < 0:
            raise ValueError(f"queue size must be >= 0, got {max_queue}")
        self.model = model
        self.n_ctx = int(n_ctx)
        self.max_queue = int(max_queue)
        self.queue_timeout = float(queue_timeout)
        self.slots = [_Slot(i, model.new_context(self.n_ctx)) for i in range(n_parallel)]
        if reserve_kv:  # the memory of a full server up front: RSS stays flat under load
            for s in self.slots:
                s.ctx.reserve_all()
        self.n_ubatch = model.n_ubatch
        self._queue: collections.deque[EngineRequest] = collections.deque()
        self._cv = threading.Condition()
        self._stop = False
        self.error: BaseException | None = None
        self.stats = collections.Counter()
        # (time, tokens) of recent decode steps; appended by the engine thread, read (copied)
        # by snapshot() on the HTTP thread
        self._rate: collections.deque = collections.deque(maxlen=4096)
        self._thread = threading.Thread(target=self._run, name="unigemma-engine", daemon=True)
        self._thread.start()

    # -- outside API (any thread) ------------------------------------------------------------------
    def submit(self, req: EngineRequest) -> None:
        with self._cv:
            if self._stop or self.error is not None:
                raise EngineStoppedError("the engine is not running")
            if len(self._queue) >= self.max_queue and not self._free_slot_exists():
                self.stats["rejected_queue_full"] += 1
                raise QueueFullError(f"the request queue is full ({self.max_queue} waiting)")
            self._queue.append(req)
            self.stats["requests"] += 1
            self._cv.notify()

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def snapshot(self) -> dict:
        """Numbers for /metrics and /health (read without the lock: a consistent-enough view)."""
        now = time.perf_counter()
        recent = [(t, n) for t, n in list(self._rate) if now - t <= 10.0]  # list(): one atomic copy
        toks = sum(n for _, n in recent)
        span = (now - recent[0][0]) if len(recent) > 1 else 0.0
        return {
            "slots": len(self.slots),
            "slots_busy": sum(1 for s in self.slots if s.req is not None),
            "queue": len(self._queue),
            "kv_bytes": sum(s.ctx.kv_bytes for s in self.slots),
            "kv_tokens": sum(s.ctx.n_past for s in self.slots),
            "kv_capacity_tokens": self.n_ctx * len(self.slots),
            "decode_tokens_per_second": toks / span if span > 0 else 0.0,
            **dict(self.stats),  # dict(): one C-level copy, safe against the engine thread
        }

    # -- scheduler thread --------------------------------------------------------------------------
    def _free_slot_exists(self) -> bool:
        return any(s.req is None for s in self.slots)

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._stop and not self._queue and all(s.req is None for s in self.slots):
                        self._cv.wait(0.5)
                    if self._stop:
                        break
                    self._expire_queue()
                    self._admit()
                self._step()
        except BaseException as e:  # noqa: BLE001 - reported to every waiting request
            self.error = e
            for s in self.slots:
                if s.req is not None:
                    self._emit(s.req, ("error", e))
            while self._queue:
                self._emit(self._queue.popleft(), ("error", e))
            raise
        finally:
            with self._cv:
                stopped = EngineStoppedError("the server is shutting down")
                while self._queue:
                    self._emit(self._queue.popleft(), ("error", stopped))
            for s in self.slots:
                if s.req is not None:
                    self._emit(s.req, ("error", EngineStoppedError("the server is shutting down")))
                    s.req = None

    def _expire_queue(self) -> None:
        now = time.perf_counter()
        keep = collections.deque()
        for r in self._queue:
            if r.cancelled:
                self.stats["cancelled"] += 1
            elif now - r.t_submit > self.queue_timeout:
                self.stats["rejected_queue_timeout"] += 1
                self._emit(r, ("error", EngineStoppedError(
                    f"waited {now - r.t_submit:.0f} s for a free slot (all {len(self.slots)} busy)")))
            else:
                keep.append(r)
        self._queue = keep

    def _admit(self) -> None:
        while self._queue and self._free_slot_exists():
            req = self._queue.popleft()
            slot = self._pick_slot(req)
            self._start(slot, req)

    def _pick_slot(self, req: EngineRequest) -> _Slot:
        """The free slot whose cache shares the longest prefix with the prompt; ties: the least
        recently used (keeps other conversations' caches alive longest)."""
        free = [s for s in self.slots if s.req is None]
        return max(free, key=lambda s: (common_prefix(s.cached, req.keys), -s.last_used))

    def _start(self, slot: _Slot, req: EngineRequest) -> None:
        ids = req.ids
        keep = resume_point(slot.ctx, slot.cached, req.keys, req.kinds)
        del slot.cached[keep:]
        req.reused = keep
        slot.req, slot.state, slot.pos, slot.pending, slot.n_counted, slot.h = req, "prefill", keep, None, 0, None
        if self.model.drafter is not None:
            slot.draft = DraftLength(self.model.draft_tokens)
        self._emit(req, ("started", slot.index))
        self.stats["prompt_tokens"] += len(ids)
        self.stats["prompt_tokens_reused"] += keep

    def _step(self) -> None:
        for s in self.slots:
            if s.req is not None and s.req.cancelled:
                self.stats["cancelled"] += 1
                self._finish(s, cancelled=True)
        for s in self.slots:
            if s.state == "prefill":
                self._guard(s, self._prefill_chunk)
        dec = [s for s in self.slots if s.state == "decode"]
        if not dec:
            return
        if len(dec) == 1 and self._can_draft(dec[0]):
            self._guard(dec[0], self._draft_round)
            return
        try:
            rows = _core.decode_batch([s.ctx for s in dec], np.asarray([s.pending for s in dec], dtype=np.int32))
        except Exception as e:  # noqa: BLE001 - a bad step fails its requests, not the server
            for s in dec:
                self._fail(s, e)
            return
        self._rate.append((time.perf_counter(), len(dec)))
        self.stats["decode_steps"] += 1
        self.stats["decode_rows"] += len(dec)
        for s, row in zip(dec, rows):
            s.cached.append(s.pending)
            s.pending, s.h = None, None
            self._guard(s, self._next_token, row)

    def _guard(self, s: _Slot, fn, *args) -> None:
        try:
            fn(s, *args)
        except Exception as e:  # noqa: BLE001
            self._fail(s, e)

    def _fail(self, s: _Slot, e: Exception) -> None:
        req = s.req
        s.ctx.reset()
        s.cached = []
        s.req, s.state, s.pending = None, "idle", None
        self.stats["errors"] += 1
        if req is not None:
            self._emit(req, ("error", e))

    def _prefill_chunk(self, s: _Slot) -> None:
        req = s.req
        n = len(req.ids)
        a = s.pos
        b = min(n, a + self.n_ubatch)
        if req.kinds is not None and b < n:  # never end a chunk inside an image block
            while b > a + 1 and req.kinds[b] == 1 and req.kinds[b - 1] == 1:
                b -= 1
            if b == a + 1 and req.kinds[a] == 1:  # a block longer than n_ubatch cannot happen (Model raised it)
                b = min(n, a + self.n_ubatch)
        last = b == n
        emb = kinds = None
        if req.kinds is not None:
            emb, kinds = req.embeddings[a:b], req.kinds[a:b]
        out = s.ctx.eval(np.asarray(req.ids[a:b], dtype=np.int32), want_logits=last, embeddings=emb, kinds=kinds)
        s.cached.extend(req.keys[a:b])
        s.pos = b
        self.stats["prompt_tokens_evaluated"] += b - a
        if last:
            s.state = "decode"
            self._next_token(s, out[0])

    def _next_token(self, s: _Slot, row: np.ndarray) -> None:
        """One step of the request's SequenceState on ``row`` (the logits after the last token
        in the cache): emit its events, then finish or leave the token pending."""
        req = s.req
        if req.t_first is None:
            req.t_first = time.perf_counter()
        self._handed(s, req.state.step(row, s.cached))

    def _handed(self, s: _Slot, events: list) -> bool:
        """Emit the events of a step / take; False when the request finished."""
        req = s.req
        for ev in events:
            self._emit(req, ev)
        self.stats["completion_tokens"] += len(req.state.tokens) - s.n_counted
        s.n_counted = len(req.state.tokens)
        if req.state.finished:
            self._finish(s)
            return False
        s.pending, s.state = req.state.last_token, "decode"
        return True

    # -- speculative decoding (one generating slot, a drafter loaded) -------------------------------
    def _can_draft(self, s: _Slot) -> bool:
        st = s.req.state
        return (self.model.drafter is not None and st.can_draft
                and s.ctx.n_past + st.draft_len(s.draft.k) + 1 <= self.n_ctx)

    def _draft_round(self, s: _Slot) -> None:
        """speculative.speculative_round after the pending token, then the accepted drafts and
        the next token go to the request's SequenceState (the pending token was handed out when
        it was sampled)."""
        st = s.req.state
        k = st.draft_len(s.draft.k)
        # the drafter starts from the hidden row of the token before the pending one: the last
        # evaluated row after a plain step, the last kept row after a round (the context's
        # last_hidden then still ends with the rejected drafts)
        h = s.h if s.h is not None else s.ctx.last_hidden[-1].copy()
        accepted, nxt, s.h = speculative_round(self.model.drafter, s.ctx, s.cached, s.pending, h, k, st.sampler,
                                               st.params.greedy, st.history_n)
        s.draft.update(len(accepted), k)
        self.stats["drafted"] += k
        self.stats["draft_accepted"] += len(accepted)
        self.stats["decode_steps"] += 1
        self.stats["decode_rows"] += 1
        self._rate.append((time.perf_counter(), len(accepted) + 1))
        s.pending = None
        for t in accepted + [nxt]:
            if not self._handed(s, st.take(t)):
                return

    def _finish(self, s: _Slot, cancelled: bool = False) -> None:
        req = s.req
        s.req, s.state, s.pending, s.last_used = None, "idle", None, time.perf_counter()
        if req is None:
            return
        if cancelled:
            req.state.cancel()
            return
        st = req.state
        reason = st.finish_reason
        self.stats[f"finish_{reason}"] += 1
        n = len(st.tokens)
        usage = {"prompt_tokens": len(req.ids), "completion_tokens": n, "total_tokens": len(req.ids) + n,
                 "prompt_tokens_reused": req.reused}
        self._emit(req, ("done", {"finish_reason": reason, "usage": usage, "result": st.chat,
                                  "ttft_s": (req.t_first or time.perf_counter()) - req.t_submit}))

    @staticmethod
    def _emit(req: EngineRequest, ev: tuple) -> None:
        try:
            req.sink(ev)
        except Exception:  # noqa: BLE001 - a broken consumer must not stop the engine
            req.cancelled = True
