"""Cache bookkeeping shared by the library's context and the server's slots: a context's tokens
are tracked as a list of cache keys (token ids; a soft-token position's key is a tuple whose
first item is its placeholder id and whose rest identifies the media item)."""
from __future__ import annotations

from typing import Sequence


def common_prefix(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix of two key lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def history_ids(keys: Sequence, n: int) -> list[int]:
    """The token ids of the last n cache keys (the penalties' history). n <= 0: none."""
    if n <= 0:
        return []
    return [k if isinstance(k, int) else k[0] for k in keys[-n:]]


def resume_point(ctx, cached: Sequence, keys: Sequence, kinds) -> int:
    """How many leading prompt positions a context holding ``cached`` keeps for a prompt with
    cache ``keys``: the longest common prefix, less at least one token (logits are needed), never
    inside an image block (its tokens see each other); the context is truncated there, or reset
    (returns 0) when a sliding-window ring cannot resume. The caller drops its keys past it."""
    n = len(keys)
    keep = min(common_prefix(cached, keys), n - 1)
    if kinds is not None:
        while 0 < keep < n and kinds[keep] == 1 and kinds[keep - 1] == 1:
            keep -= 1
    if keep < ctx.n_past and not ctx.truncate(keep):
        ctx.reset()
        keep = 0
    return keep
