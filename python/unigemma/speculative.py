"""Speculative decoding with the MTP drafter: draft k tokens, verify k+1 positions in one
target pass, keep the longest agreeing prefix plus the target's own next token, roll back.

One round, with t the last sampled token (not yet in the target's cache, at position pos) and
h the target's post-norm hidden state of the token before it:

    drafter:  (t, h) -> d1, h1;  (d1, h1) -> d2, h2; ...    every step at position pos, over
              the target's cache (positions < pos)
    target:   eval [t, d1 .. dk] at pos .. pos+k -> logits rows r0 .. rk, hidden rows
    accept:   greedy: d_i while d_i == sample(r_{i-1}); the first mismatch is replaced by the
              target's token; all accepted -> bonus token sample(rk)
              sampling: d_i with probability min(1, p_i(d_i) / q_i(d_i)) (p: target, q: draft,
              both as the sampler's final distribution); on rejection a token from
              max(0, p_i - q_i) normalized; all accepted -> bonus from p_k. The output has the
              target's distribution exactly (Leviathan et al. / Chen et al., 2023).
    rollback: the cache keeps t and the accepted drafts (Context.truncate; sliding-window rings
              keep 64 spare slots, so k <= 8 never loses the window); the next h is the hidden
              row of the last kept token.

Greedy output is token-identical to plain greedy decoding as long as the target's logits for a
token do not depend on the batch it is evaluated in (true for F32/F16/BF16/K-quant matmuls and
the attention; see BENCHMARKS.md / issue 7 for Q4_0/Q8_0 GEMM).

Draft length: fixed (``draft_tokens=N``) or adaptive (``"auto"``: start at 4, +1 after a fully
accepted round, -1 after a round whose first draft was rejected, within [1, 8]), per generation.

``speculative_round`` is one round on any context; the library's driver (generation/local.py)
and the server's scheduler call it and hand the kept tokens to their ``SequenceState``.
"""
from __future__ import annotations

import time

import numpy as np

from .generation.cache import history_ids

MAX_DRAFT = 8


def accept_probability(p: float, q: float) -> float:
    """Speculative sampling's acceptance test for a draft token with target probability p and
    draft probability q: min(1, p / q) (q > 0: the drafter drew the token)."""
    return min(1.0, p / q) if q > 0 else 0.0


def adapt_draft_len(cur: int, n_acc: int, k: int) -> int:
    """The "auto" draft length after a round of k drafts with n_acc accepted: +1 after a fully
    accepted round, -1 after a round whose first draft was rejected, within [1, MAX_DRAFT]."""
    if n_acc == k:
        return min(cur + 1, MAX_DRAFT)
    if n_acc == 0:
        return max(cur - 1, 1)
    return cur


def draft(drafter, ctx, t: int, pos: int, h, k: int, sampler, greedy: bool, history) -> tuple[list, list]:
    """k drafter steps from (t, h) at position pos over ctx's cache. history(drafts) is the
    penalty history before the next draft. Returns (drafts, q rows: the sampler's distribution
    of each draft when sampling, empty when greedy)."""
    drafts: list[int] = []
    qs: list = []
    tok, hh = t, h
    for _ in range(k):
        dl, hh = drafter.step(ctx, tok, pos, hh)
        hist = history(drafts)
        if greedy:
            d = sampler.sample(dl, hist)
        else:
            q = sampler.probs(dl, hist)
            d = sampler.draw(q)
            qs.append(q)
        drafts.append(int(d))
        tok = d
    return drafts, qs


def verify(sampler, rows, drafts: list, qs: list, greedy: bool, history) -> tuple[int, int]:
    """Acceptance over the target rows of [t, d1..dk]: greedy keeps d_i while it equals the
    sampler's choice on row i-1; sampling keeps it with probability min(1, p/q) and draws a
    rejection's replacement from max(0, p - q). history(i): the penalty history before draft i
    (i = k: before the bonus token). Returns (accepted drafts, the next token)."""
    n_acc, nxt = 0, None
    for i, d in enumerate(drafts):
        hist = history(i)
        if greedy:
            want = int(sampler.sample(rows[i], hist))
            ok = want == d
            if not ok:
                nxt = want
        else:
            p = sampler.probs(rows[i], hist)
            ok = sampler.uniform() < accept_probability(float(p[d]), float(qs[i][d]))
            if not ok:
                r = np.maximum(p - qs[i], 0.0).astype(np.float32)
                nxt = int(sampler.draw(r if r.sum() > 0 else p))
        if not ok:
            break
        n_acc += 1
    if nxt is None:  # every draft accepted: the bonus token from the last row
        nxt = int(sampler.sample(rows[len(drafts)], history(len(drafts))))
    return n_acc, nxt


def speculative_round(drafter, ctx, cached: list, t: int, h, k: int, sampler, greedy: bool, history_n: int,
                      stats: "DraftStats | None" = None) -> tuple[list[int], int, np.ndarray]:
    """One round after the last sampled token t (not in ``ctx`` yet; ``cached``: the cache keys
    ``ctx`` holds, kept in step) with h the hidden row of the token before it: draft k, verify
    t + drafts in one target pass, roll back to t + the accepted drafts. Returns (accepted
    drafts: in the cache now, the next token: not in the cache, the hidden row for the next
    round). The caller hands the accepted drafts and then the next token to its sequence."""
    pos = ctx.n_past
    base = cached + [t]
    t0 = time.perf_counter()
    drafts, qs = draft(drafter, ctx, t, pos, h, k, sampler, greedy, lambda ds: history_ids(base + ds, history_n))
    t1 = time.perf_counter()
    cached.append(t)
    cached.extend(drafts)
    try:
        rows = ctx.eval(np.asarray([t] + drafts, dtype=np.int32), all_logits=True)
    finally:
        del cached[ctx.n_past:]  # after an interrupt the context may hold fewer tokens
    hid = ctx.last_hidden
    t2 = time.perf_counter()
    n_acc, nxt = verify(sampler, rows, drafts, qs, greedy, lambda i: history_ids(base + drafts[:i], history_n))
    keep = pos + 1 + n_acc
    if not ctx.truncate(keep):
        raise RuntimeError("[speculative] the KV cache could not roll back the rejected drafts")
    del cached[keep:]
    if stats is not None:
        stats.record(k, n_acc, t1 - t0, t2 - t1)
    return drafts[:n_acc], int(nxt), hid[n_acc].copy()


class DraftLength:
    """Tokens to draft per round: fixed (1..MAX_DRAFT) or "auto" (``adapt_draft_len``, from 4)."""

    def __init__(self, setting) -> None:
        self.adaptive = setting == "auto"
        self.k = 4 if self.adaptive else setting
        if not self.adaptive and (isinstance(setting, bool) or not isinstance(setting, int)
                                  or not 1 <= setting <= MAX_DRAFT):
            raise ValueError(f"draft_tokens must be 1..{MAX_DRAFT} or 'auto', got {setting!r}")

    def update(self, n_acc: int, k: int) -> None:
        if self.adaptive:
            self.k = adapt_draft_len(self.k, n_acc, k)

    @property
    def setting(self):
        return "auto" if self.adaptive else self.k


class DraftStats:
    """Counters of a generation's speculative rounds (``stats`` keys of the library results)."""

    def __init__(self) -> None:
        self.drafted = self.accepted = self.rounds = 0
        self.by_pos_drafted = [0] * MAX_DRAFT
        self.by_pos_accepted = [0] * MAX_DRAFT
        self.draft_s = self.target_s = 0.0

    def record(self, k: int, n_acc: int, draft_s: float, target_s: float) -> None:
        # position i was drafted and judged when every draft before it was accepted
        for i in range(min(n_acc + 1, k)):
            self.by_pos_drafted[i] += 1
        for i in range(n_acc):
            self.by_pos_accepted[i] += 1
        self.drafted += k
        self.accepted += n_acc
        self.rounds += 1
        self.draft_s += draft_s
        self.target_s += target_s

    def as_dict(self, emitted: int, target_passes: int, setting) -> dict:
        rate = [a / d if d else None for a, d in zip(self.by_pos_accepted, self.by_pos_drafted)]
        while rate and rate[-1] is None:
            rate.pop()
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else 0.0,
            "acceptance_by_position": rate,
            "draft_rounds": self.rounds,
            "tokens_per_target_pass": emitted / target_passes if target_passes else 0.0,
            "draft_seconds": self.draft_s,
            "target_seconds": self.target_s,
            "draft_tokens": setting,
        }


class OracleDrafter:
    """A drafter that knows the target's greedy continuation (for benchmarks and tests): at
    generated index g it proposes ``tokens[g]`` with probability ``accept_rate`` and a wrong
    token otherwise. Its logits are one-hot-like (the proposal 30 above everything else)."""

    def __init__(self, tokens, n_prompt: int, n_vocab: int, hidden: int, accept_rate: float = 1.0, seed: int = 0):
        self.tokens, self.n_prompt, self.n_vocab = list(tokens), n_prompt, n_vocab
        self.rate = accept_rate
        self.rng = np.random.default_rng(seed)
        self.h = np.zeros(hidden, np.float32)
        self._pos, self._j = -1, 0
        self._row = np.zeros(n_vocab, np.float32)

    def step(self, ctx, token, pos, h):
        if pos != self._pos:
            self._pos, self._j = pos, 0
        g = pos + 1 + self._j - self.n_prompt   # generated index of the token to propose
        self._j += 1
        right = self.tokens[g] if 0 <= g < len(self.tokens) else 0
        prop = right if self.rng.random() < self.rate else (right + 1 + int(self.rng.integers(1000))) % self.n_vocab
        row = self._row
        row[:] = 0.0
        row[prop] = 30.0
        return row, self.h
