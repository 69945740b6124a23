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
          samples its next token from its own row of logits; with a drafter loaded and one
          slot generating, a speculative round instead (draft, verify, roll back)

A row of ``decode_batch`` is bitwise what a single-sequence decode returns, so a request's
output does not depend on what else is running (seeded sampling is reproducible under load).

Requests talk to the outside through a ``sink(event)`` callable, called on the engine thread:
    ("started", slot index)                        the request left the queue
    ("token", {"id", "logprob", "top_logprobs"})   only when logprobs were asked for
    ("text", str) | ("content", str) | ("thinking", str) | ("tool_call", {"name", "arguments"})
    ("done", {"finish_reason", "usage", "result"})   result: parser.finish() dict or the text
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
from ..generate import TextAssembler
from ..model import _common_prefix, history_ids, resume_point
from ..speculative import MAX_DRAFT, adapt_draft_len, draft, verify


class QueueFullError(Exception):
    """The bounded request queue is full (HTTP 429)."""


class EngineStoppedError(Exception):
    """The engine is shutting down or its thread died (HTTP 503)."""


@dataclass
class EngineRequest:
    ids: list[int]                      # prompt token ids
    keys: list                          # cache keys of the prompt (ids; media positions carry their hash)
    embeddings: Any                     # float32 [n, n_embd] or None (multimodal rows)
    kinds: Any                          # int8 [n] or None
    max_tokens: int
    sampler: Any                        # _core.Sampler
    stop_ids: set
    stops: list
    special: bool                       # spell control tokens in the text (chat: the parser reads them)
    sink: Callable[[tuple], None]
    history_n: int = 0                  # penalties look at this many last tokens
    top_logprobs: int | None = None     # None: no logprobs; k >= 0: the sampled token's + k alternatives
    constraint: Any = None              # JsonConstraint-like: mask_logits(row), accept(id), done
    parser: Any = None                  # chat stream parser (feed / flush / finish / stopped_by)
    prefix_tokens: list = field(default_factory=list)  # forced output tokens (e.g. a tool call's opening)
    suffix_tokens: list = field(default_factory=list)  # forced once the constraint is done (the call's closer)
    temperature: float = 0.0            # > 0: sampling (speculative rounds then use the p/q test)
    tokens: list = field(default_factory=list)
    reused: int = 0
    cancelled: bool = False
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float | None = None

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
        self.asm: TextAssembler | None = None
        self.last_used = 0.0
        self.draft_k = 4                # adaptive draft length (speculative.py's rule)


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
        self.slots = [_Slot(i, model._new_context(self.n_ctx)) for i in range(n_parallel)]
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
        return max(free, key=lambda s: (_common_prefix(s.cached, req.keys), -s.last_used))

    def _start(self, slot: _Slot, req: EngineRequest) -> None:
        ids = req.ids
        keep = resume_point(slot.ctx, slot.cached, req.keys, req.kinds)
        del slot.cached[keep:]
        req.reused = keep
        slot.req, slot.state, slot.pos, slot.pending = req, "prefill", keep, None
        slot.asm = TextAssembler(req.stops)
        self._emit(req, ("started", slot.index))
        self.stats["prompt_tokens"] += len(ids)
        self.stats["prompt_tokens_reused"] += keep

    def _step(self) -> None:
        for s in self.slots:
            if s.req is not None and s.req.cancelled:
                self.stats["cancelled"] += 1
                self._finish(s, "cancelled", emit=False)
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
            s.pending = None
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
        """Sample from ``row`` (the logits after the last token in the cache), emit, and either
        finish or leave the token pending for the next decode step."""
        req = s.req
        if req.t_first is None:
            req.t_first = time.perf_counter()
        if req.prefix_tokens:
            self._take(s, req.prefix_tokens.pop(0))
            return
        info = None
        if req.top_logprobs is not None:
            info = _logprob_info(row, req.top_logprobs)  # the model's distribution, before any mask
        if req.constraint is not None:
            if req.constraint.done:
                if req.suffix_tokens:  # e.g. <tool_call|> after forced call arguments
                    self._take(s, req.suffix_tokens.pop(0))
                else:
                    self._finish(s, "stop")
                return
            row = np.array(row, dtype=np.float32, copy=True)
            req.constraint.mask_logits(row)
        t = int(req.sampler.sample(row, history_ids(s.cached, req.history_n)))
        if req.constraint is not None:
            req.constraint.accept(t)
        if info is not None:
            info["id"], info["logprob"] = t, float(info.pop("_lp")[t])
        self._take(s, t, info)

    def _take(self, s: _Slot, t: int, info: dict | None = None) -> bool:
        """Hand token t to the request; False when the request finished (t not kept pending)."""
        req = s.req
        if t in req.stop_ids:
            self._finish(s, "stop")
            return False
        req.tokens.append(t)
        self.stats["completion_tokens"] += 1
        if info is not None:
            self._emit(req, ("token", info))
        text = s.asm.push(self.model.tokenizer.token_to_piece(t, special=req.special))
        self._text(req, text)
        if s.asm.stopped is not None or (req.parser is not None and req.parser.stopped_by is not None):
            self._finish(s, "stop")
        elif req.constraint is not None and req.constraint.done and not req.stop_ids and not req.suffix_tokens:
            self._finish(s, "stop")
        elif len(req.tokens) >= req.max_tokens or s.ctx.n_past + 1 > self.n_ctx:
            self._finish(s, "length")
        else:
            s.pending, s.state = t, "decode"
            return True
        return False

    # -- speculative decoding (one generating slot, a drafter loaded) -------------------------------
    def _can_draft(self, s: _Slot) -> bool:
        req = s.req
        return (self.model.drafter is not None and req.constraint is None and req.top_logprobs is None
                and not req.prefix_tokens and len(req.tokens) + 1 < req.max_tokens
                and s.ctx.n_past + MAX_DRAFT + 2 <= self.n_ctx)

    def _draft_round(self, s: _Slot) -> None:
        """Draft k tokens after the pending token t, verify t + drafts in one target pass, keep
        the agreeing prefix (greedy: equal to the target's choice; sampling: the min(1, p/q)
        test of speculative.py), roll the cache back, hand out the kept tokens. The pending
        token was already handed out when it was sampled."""
        req, ctx, sampler = s.req, s.ctx, s.req.sampler
        drafter = self.model.drafter
        t = s.pending
        pos = ctx.n_past
        h = ctx.last_hidden[-1].copy()
        k = max(1, min(s.draft_k, req.max_tokens - len(req.tokens), MAX_DRAFT))
        greedy = not req.temperature > 0.0
        base = s.cached + [t]
        drafts, qs = draft(drafter, ctx, t, pos, h, k, sampler, greedy, lambda ds: history_ids(base + ds, req.history_n))
        rows = ctx.eval(np.asarray([t] + drafts, dtype=np.int32), all_logits=True)
        s.cached.extend([t] + drafts)
        n_acc, nxt = verify(sampler, rows, drafts, qs, greedy, lambda i: history_ids(base + drafts[:i], req.history_n))
        s.draft_k = adapt_draft_len(s.draft_k, n_acc, k)
        keep = pos + 1 + n_acc
        if not ctx.truncate(keep):
            raise RuntimeError("[speculative] the KV cache could not roll back the rejected drafts")
        del s.cached[keep:]
        self.stats["drafted"] += k
        self.stats["draft_accepted"] += n_acc
        self.stats["decode_steps"] += 1
        self.stats["decode_rows"] += 1
        self._rate.append((time.perf_counter(), n_acc + 1))
        s.pending = None
        for d in drafts[:n_acc]:
            if not self._take(s, d):
                return
            s.pending = None  # d is in the cache already
        self._take(s, nxt)

    def _text(self, req: EngineRequest, text: str) -> None:
        if not text:
            return
        if req.parser is None:
            self._emit(req, ("text", text))
            return
        for ev in req.parser.feed(text):
            self._emit(req, ev)

    def _finish(self, s: _Slot, reason: str, emit: bool = True) -> None:
        req = s.req
        s.req, s.state, s.pending, s.last_used = None, "idle", None, time.perf_counter()
        if req is None or not emit:
            return
        self._text(req, s.asm.flush())
        if req.parser is not None:
            for ev in req.parser.flush():
                self._emit(req, ev)
            result = req.parser.finish()
        else:
            result = None
        self.stats[f"finish_{reason}"] += 1
        usage = {"prompt_tokens": len(req.ids), "completion_tokens": len(req.tokens),
                 "total_tokens": len(req.ids) + len(req.tokens), "prompt_tokens_reused": req.reused}
        self._emit(req, ("done", {"finish_reason": reason, "usage": usage, "result": result,
                                  "ttft_s": (req.t_first or time.perf_counter()) - req.t_submit}))

    @staticmethod
    def _emit(req: EngineRequest, ev: tuple) -> None:
        try:
            req.sink(ev)
        except Exception:  # noqa: BLE001 - a broken consumer must not stop the engine
            req.cancelled = True


def _logprob_info(row: np.ndarray, k: int) -> dict:
    """log-softmax of the raw logits; the k most likely tokens (ids, logprobs)."""
    x = row.astype(np.float64)
    m = x.max()
    lp = x - m - np.log(np.exp(x - m).sum())
    top = []
    if k > 0:
        idx = np.argpartition(-lp, k)[:k] if k < lp.size else np.arange(lp.size)
        idx = idx[np.argsort(-lp[idx], kind="stable")]
        top = [(int(i), float(lp[i])) for i in idx]
    return {"_lp": lp, "top_logprobs": top}
