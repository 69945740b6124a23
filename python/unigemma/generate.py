"""Result types and the text side of generation: turning sampled tokens into text that can be
streamed safely.

Two things make streaming text harder than joining token pieces:

* A token may carry only part of a UTF-8 character (Gemma's byte-fallback tokens ``<0xE2>``...).
  Bytes are decoded incrementally: an incomplete character at the end is held until the next
  token completes it; bytes that can never form a character become U+FFFD.
* A stop string may be spelled by several tokens. Text is held back while its end could still be
  the beginning of a stop string (the longest suffix that is a proper prefix of one of them), so
  a stop string is never emitted, not even in part, and the text before it always is.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator


@dataclass
class GenerationResult:
    """What ``Model.generate(..., stream=False)`` returns.

    text:   the generated text, without the stop string or end-of-generation token that ended it.
    tokens: the generated token ids, excluding a final end-of-generation token but including the
            tokens that spelled a stop string (they are in the model's cache).
    stats:  prompt_tokens, reused_tokens (prompt tokens served from the cache),
            prompt_eval_tokens, generated_tokens, prefill_s, decode_s, prefill_tps, decode_tps,
            finish_reason ("stop": an end-of-generation / stop token, a stop string or a
            complete response_format value; "length": max_tokens reached; chat also
            "tool_calls"; see ``unigemma.generation.events``), seed.
    logprobs: with ``logprobs=True``, one ``TokenLogprob`` per sampled token (forced tokens of a
            tool_choice have none), else None.
    """

    text: str
    tokens: list[int]
    stats: dict
    logprobs: list | None = None

    @property
    def finish_reason(self) -> str:
        return self.stats["finish_reason"]


@dataclass
class ChatResult:
    """What ``Model.chat(..., stream=False)`` returns.

    content:    the visible answer.
    thinking:   the reasoning channel (Gemma 4 with ``thinking=True``), else "".
    tool_calls: ``[{"name": str, "arguments": dict}, ...]`` in the order the model made them.
    message:    an OpenAI-style assistant message to append to ``messages`` for the next turn:
                ``{"role": "assistant", "content": str}`` plus ``"tool_calls"`` (OpenAI form, with
                JSON-string arguments and ids ``call_0``...) and ``"reasoning_content"`` when present.
    stats:      as for ``GenerationResult.stats``.
    errors:     tool calls the parser could not read (their text is kept in ``content``).
    tokens:     the generated token ids.
    logprobs:   as for ``GenerationResult.logprobs``.
    """

    content: str
    thinking: str
    tool_calls: list[dict]
    message: dict
    stats: dict
    errors: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    logprobs: list | None = None

    @property
    def finish_reason(self) -> str:
        return self.stats["finish_reason"]


def openai_tool_calls(calls: Iterable[dict]) -> list[dict]:
    """Parsed calls ``{"name", "arguments"}`` -> OpenAI ``tool_calls`` entries."""
    import json

    return [{"id": f"call_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for i, c in enumerate(calls)]


def assistant_message(content: str, tool_calls: list[dict], thinking: str) -> dict:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = openai_tool_calls(tool_calls)
    if thinking:
        msg["reasoning_content"] = thinking
    return msg


def held_suffix(text: str, stops: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class TextAssembler:
    """Token pieces (bytes) in, safe-to-emit text out; finds stop strings.

    ``push(piece)`` returns the text that can be emitted now; after it, ``stopped`` is True when a
    stop string appeared (the text before it has been returned, nothing after it ever will be).
    ``flush()`` returns what was held back (incomplete UTF-8 becomes U+FFFD).
    """

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.stopped: str | None = None

    def push(self, piece: bytes) -> str:
        if self.stopped is not None:
            return ""
        text = self._held + self._dec.decode(piece)
        if not self.stops:
            self._held = ""
            return text
        cut, which = -1, None
        for s in self.stops:
            p = text.find(s)
            if p >= 0 and (cut < 0 or p < cut):
                cut, which = p, s
        if which is not None:
            self.stopped, self._held = which, ""
            return text[:cut]
        keep = held_suffix(text, self.stops)
        self._held = text[len(text) - keep:]
        return text[:len(text) - keep]

    def flush(self) -> str:
        if self.stopped is not None:
            return ""
        text = self._held + self._dec.decode(b"", final=True)
        self._held = ""
        return text


class Stream:
    """Iterator over the pieces of a streamed generation (``str`` for ``generate``, event tuples
    for ``chat`` and for ``generate`` with logprobs; see ``unigemma.generation.events``). ``result`` holds the ``GenerationResult`` / ``ChatResult`` once the iterator is
    exhausted; ``close()`` stops the generation early (the model's cache stays consistent)."""

    def __init__(self, gen: Iterator) -> None:
        self._gen = gen
        self.result = None

    def __iter__(self) -> "Stream":
        return self

    def __next__(self):
        try:
            return next(self._gen)
        except StopIteration as e:
            self.result = e.value
            raise

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_stats(prompt_tokens: int, reused: int, generated: int, prefill_s: float, decode_s: float,
               finish_reason: str, seed: int) -> dict:
    evaluated = prompt_tokens - reused
    return {
        "prompt_tokens": prompt_tokens,
        "reused_tokens": reused,
        "prompt_eval_tokens": evaluated,
        "generated_tokens": generated,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "prefill_tps": evaluated / prefill_s if prefill_s > 0 else 0.0,
        "decode_tps": generated / decode_s if decode_s > 0 else 0.0,
        "finish_reason": finish_reason,
        "seed": seed,
    }


def format_timings(stats: dict) -> str:
    """llama.cpp-style one-line summary of ``stats``."""
    return (f"prompt eval: {stats['prompt_eval_tokens']} tokens, {stats['prefill_s'] * 1e3:.1f} ms, "
            f"{stats['prefill_tps']:.1f} tok/s | eval: {stats['generated_tokens']} tokens, "
            f"{stats['decode_s'] * 1e3:.1f} ms, {stats['decode_tps']:.1f} tok/s"
            + (f" | {stats['reused_tokens']} cached" if stats.get("reused_tokens") else "")
            + (f" | drafted {stats['drafted']}, accepted {stats['accepted']} "
               f"({100 * stats['acceptance_rate']:.0f}%), {stats['tokens_per_target_pass']:.2f} tokens/pass"
               if "drafted" in stats else ""))
