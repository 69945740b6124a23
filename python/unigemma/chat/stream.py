"""Streaming parsers for generated text, and the stop strings of each chat format.

Gemma 4 output (reference §7) is a mix of::

    <|channel>thought\\n REASONING <channel|>   -> ("thinking", text) events
    <|tool_call>call:NAME{k:v,...}<tool_call|>  -> ("tool_call", {"name", "arguments"}) events
    anything else                              -> ("content", text) events
    <turn|> / <eos> / <|tool_response>          -> end of the message; later text is ignored

Text arrives in pieces that may split a marker anywhere (``<|tool`` + ``_call>``). Text is passed
on as soon as it cannot be part of a marker: only a suffix that is the start of some marker is
held back. Tool calls are buffered until their closing marker and then parsed; a call that does
not parse (or never closes) is passed on verbatim as content and noted in ``errors``. The
parsers never raise on model output.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .tool_syntax import STR, ToolSyntaxError, parse_tool_call

GEMMA4_STOP_STRINGS = ("<turn|>", "<eos>", "<|tool_response>")
GEMMA3_STOP_STRINGS = ("<end_of_turn>", "<eos>")

CHANNEL_OPEN, CHANNEL_CLOSE = "<|channel>", "<channel|>"
CALL_OPEN, CALL_CLOSE = "<|tool_call>", "<tool_call|>"
THOUGHT_LABEL = "thought\n"

Event = tuple[str, Any]


def stop_strings(fmt: str) -> tuple[str, ...]:
    """Texts that end a model turn for ``fmt`` ("gemma4" or "gemma3")."""
    try:
        return {"gemma4": GEMMA4_STOP_STRINGS, "gemma3": GEMMA3_STOP_STRINGS}[fmt]
    except KeyError:
        raise ValueError(f"unknown chat format {fmt!r} (expected 'gemma4' or 'gemma3')") from None


def stop_token_ids(fmt: str, vocab: Mapping[str, int] | Callable[[str], int | None],
                   eos_token_id: int | Iterable[int] | None = None) -> list[int]:
    """Token ids to stop on: each stop string that is a single token in ``vocab`` (a token ->
    id mapping or a lookup function returning None when absent), plus the model's EOS id(s)."""
    lookup = vocab.get if isinstance(vocab, Mapping) else vocab
    ids = set()
    for s in stop_strings(fmt):
        i = lookup(s)
        if i is not None and i >= 0:
            ids.add(int(i))
    if eos_token_id is not None:
        ids.update([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
    return sorted(ids)


def _held_suffix(text: str, markers: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some marker."""
    best = 0
    for m in markers:
        for n in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:n]):
                best = n
                break
    return best


def _find_first(text: str, markers: Iterable[str]) -> tuple[int, str | None]:
    best, which = -1, None
    for m in markers:
        p = text.find(m)
        if p >= 0 and (best < 0 or p < best):
            best, which = p, m
    return best, which


class _StreamParser:
    """Shared engine: a mode, a buffer of unprocessed text, and per-mode marker sets."""

    # mode -> markers that mean something in that mode; subclasses fill these in
    MARKERS: dict[str, tuple[str, ...]] = {}
    STOPS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.mode = "content"
        self._buf = ""
        self._text: dict[str, list[str]] = {"thinking": [], "content": []}
        self.tool_calls: list[dict] = []
        self.errors: list[str] = []
        self.stopped_by: str | None = None  # the stop marker seen, if any
        self._finished = False

    # -- public API ---------------------------------------------------------------------------
    def feed(self, piece: str) -> list[Event]:
        """Add generated text; returns the events that are now certain."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._buf += piece
        return self._drain(final=False)

    def flush(self) -> list[Event]:
        """End of generation: emit whatever is still held back."""
        if self._finished:
            return []
        events = self._drain(final=True)
        self._finished = True
        return events

    def finish(self) -> dict:
        """Flush, then return ``{"thinking", "content", "tool_calls", "errors"}`` for the message."""
        self.flush()
        return {"thinking": "".join(self._text["thinking"]), "content": "".join(self._text["content"]),
                "tool_calls": list(self.tool_calls), "errors": list(self.errors)}

    # -- engine -------------------------------------------------------------------------------
    def _emit(self, events: list[Event], kind: str, text: str) -> None:
        if text:
            self._text[kind].append(text)
            events.append((kind, text))

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while self._buf:
            if self.mode == "done":
                self._buf = ""
            elif not self._step(events, final):
                break
        return events

    def _step(self, events: list[Event], final: bool) -> bool:
        """Consume what can be consumed in the current text mode; False when waiting for input."""
        kind = self.mode
        markers = self.MARKERS[kind]
        pos, marker = _find_first(self._buf, markers)
        if marker is None:
            keep = 0 if final else _held_suffix(self._buf, markers)
            self._emit(events, kind, self._buf[:len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep:]
            return False
        self._emit(events, kind, self._buf[:pos])
        self._buf = self._buf[pos + len(marker):]
        if marker in self.STOPS:
            self.stopped_by, self.mode = marker, "done"
        else:
            self._on_marker(marker)
        return True

    def _on_marker(self, marker: str) -> None:  # pragma: no cover - overridden
        pass


class Gemma3StreamParser(_StreamParser):
    """Gemma 3: everything is content; ``<end_of_turn>`` / ``<eos>`` end the message."""

    MARKERS = {"content": GEMMA3_STOP_STRINGS}
    STOPS = GEMMA3_STOP_STRINGS


class Gemma4StreamParser(_StreamParser):
    """Gemma 4: thinking channel, tool calls and content (module docstring)."""

    MARKERS = {
        # stray closers are markers too, so they are dropped instead of leaking into the text
        "content": (CHANNEL_OPEN, CHANNEL_CLOSE, CALL_OPEN, CALL_CLOSE) + GEMMA4_STOP_STRINGS,
        "thinking": (CHANNEL_CLOSE, CHANNEL_OPEN) + GEMMA4_STOP_STRINGS,
    }
    STOPS = GEMMA4_STOP_STRINGS

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while self._buf or (final and self.mode == "call"):
            if self.mode == "done":
                self._buf = ""
            elif self.mode == "label":
                if not self._label(final):
                    break
            elif self.mode == "call":
                if not self._call(events, final):
                    break
            elif not self._step(events, final):
                break
        return events

    def _on_marker(self, marker: str) -> None:
        if marker == CHANNEL_OPEN:
            self.mode = "label" if self.mode == "content" else self.mode  # nested open: dropped
        elif marker == CHANNEL_CLOSE:
            self.mode = "content"  # closes thinking; a stray one in content is dropped
        elif marker == CALL_OPEN:
            self.mode = "call"
        # CALL_CLOSE outside a call: dropped

    def _label(self, final: bool) -> bool:
        """After ``<|channel>``: skip the channel name ``thought`` and one newline."""
        b = self._buf
        if b.startswith(THOUGHT_LABEL):
            self._buf = b[len(THOUGHT_LABEL):]
        elif THOUGHT_LABEL.startswith(b) and not final:
            return False  # could still become "thought\n"
        elif b.startswith("thought"):
            self._buf = b[len("thought"):]
        self.mode = "thinking"
        return True

    def _call(self, events: list[Event], final: bool) -> bool:
        """Inside ``<|tool_call>``: wait for the closer (outside strings), then parse the call."""
        end, marker = _call_end(self._buf)
        if marker is None and not final:
            return False
        body = self._buf if marker is None else self._buf[:end]
        self._buf = "" if marker is None else self._buf[end + len(marker):]
        self.mode = "content"
        try:
            if marker != CALL_CLOSE:
                raise ToolSyntaxError("tool call not closed with <tool_call|>")
            name, args = parse_tool_call(body)
        except ToolSyntaxError as e:
            self.errors.append(str(e))
            self._emit(events, "content", CALL_OPEN + body + (CALL_CLOSE if marker == CALL_CLOSE else ""))
        else:
            call = {"name": name, "arguments": args}
            self.tool_calls.append(call)
            events.append(("tool_call", call))
        if marker in GEMMA4_STOP_STRINGS:
            self.stopped_by, self.mode = marker, "done"
        return True


def _call_end(text: str) -> tuple[int, str | None]:
    """First ``<tool_call|>`` or stop marker in ``text`` that lies outside a ``<|"|>`` string."""
    pos, in_string = 0, False
    while True:
        if in_string:
            q = text.find(STR, pos)
            if q < 0:
                return -1, None
            pos, in_string = q + len(STR), False
            continue
        q = text.find(STR, pos)
        p, marker = _find_first(text[pos:q if q >= 0 else len(text)], (CALL_CLOSE,) + GEMMA4_STOP_STRINGS)
        if marker is not None:
            return pos + p, marker
        if q < 0:
            return -1, None
        pos, in_string = q + len(STR), True


def parse_gemma4(text: str) -> dict:
    """Single-shot parse of a complete Gemma 4 model output."""
    p = Gemma4StreamParser()
    p.feed(text)
    return p.finish()


def parse_gemma3(text: str) -> dict:
    p = Gemma3StreamParser()
    p.feed(text)
    return p.finish()
