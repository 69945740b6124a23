"""Gemma 4's tool value syntax: rendering Python JSON values into it and parsing them back.

The syntax is JSON-like, with three differences (reference §7, "Tool call syntax"):

* strings are wrapped in the ``<|"|>`` token on both sides and never escaped, so a string can
  hold any text except ``<|"|>`` itself;
* object keys are bare (``{city:<|"|>Paris<|"|>}``); inside tool *declarations* the enum /
  nested-value keys are ``<|"|>``-quoted instead, so the parser accepts both;
* objects are written with their keys sorted the way Jinja's ``dictsort`` sorts them
  (case-insensitively, ties in insertion order), because that is what the chat template does.

Numbers, ``true``/``false``, ``null`` and ``[a,b]`` lists are written as in JSON, without spaces.
"""
from __future__ import annotations

import json
import re
from typing import Any

STR = '<|"|>'  # the string delimiter token


class ChatFormatError(ValueError):
    """Invalid chat input (unknown role, missing content, bad tool schema, ...)."""


def dictsorted(mapping: dict) -> list[tuple[Any, Any]]:
    """Items in Jinja ``dictsort`` order: by key, case-insensitive, stable for ties."""
    return sorted(mapping.items(), key=lambda kv: kv[0].lower() if isinstance(kv[0], str) else kv[0])


def format_value(value: Any, quote_keys: bool = False) -> str:
    """Render a JSON value in tool syntax (the template's ``format_argument`` macro).

    ``quote_keys`` wraps object keys in ``<|"|>`` (tool declarations); tool calls and tool
    responses use bare keys. ``None`` is written ``null`` (the template writes Python's
    ``None`` there; see render_gemma4's docstring)."""
    if isinstance(value, str):
        return STR + value + STR
    if isinstance(value, bool):  # before the number case: bool is an int subclass
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        parts = []
        for key, item in dictsorted(value):
            k = STR + str(key) + STR if quote_keys else str(key)
            parts.append(k + ":" + format_value(item, quote_keys))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v, quote_keys) for v in value) + "]"
    if isinstance(value, (int, float)):
        return str(value)
    raise ChatFormatError(f"cannot render a {type(value).__name__} in tool syntax: {value!r}")


def format_object_body(mapping: dict) -> str:
    """``k:v,k:v`` with bare keys, no braces: the inside of a tool call / response."""
    return ",".join(str(k) + ":" + format_value(v) for k, v in dictsorted(mapping))


# ---------------------------------------------------------------------------------------------
# Parsing: a small recursive-descent parser over the text of one value.
# ---------------------------------------------------------------------------------------------
class ToolSyntaxError(ValueError):
    """Malformed tool syntax (raised by the parser, caught by the stream parser)."""


_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORDS = {"true": True, "false": False, "null": None,
          # The real template writes Python reprs for these; accept them when reading back.
          "True": True, "False": False, "None": None}
_BARE_KEY_END = re.compile(r"[:{}\[\],]")


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ToolSyntaxError:
        return ToolSyntaxError(f"{what} at offset {self.pos} in {self.text!r}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def startswith(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def value(self, depth: int = 0) -> Any:
        if depth > 100:
            raise self.fail("nesting too deep")
        self.skip_ws()
        if self.startswith(STR):
            return self.delimited_string()
        if self.startswith('"'):
            return self.json_string()
        if self.startswith("{"):
            return self.obj(depth)
        if self.startswith("["):
            return self.array(depth)
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            s = m.group()
            return float(s) if any(c in s for c in ".eE") else int(s)
        for word, val in _WORDS.items():
            if self.startswith(word):
                self.pos += len(word)
                return val
        raise self.fail("expected a value")

    def delimited_string(self) -> str:
        start = self.pos + len(STR)
        end = self.text.find(STR, start)
        if end < 0:
            raise self.fail("unterminated string")
        self.pos = end + len(STR)
        return self.text[start:end]

    def json_string(self) -> str:
        try:
            s, end = json.decoder.scanstring(self.text, self.pos + 1)
        except ValueError as e:
            raise self.fail(f"bad JSON string ({e})") from None
        self.pos = end
        return s

    def key(self) -> str:
        self.skip_ws()
        if self.startswith(STR):
            return self.delimited_string()
        if self.startswith('"'):
            return self.json_string()
        m = _BARE_KEY_END.search(self.text, self.pos)
        end = m.start() if m else len(self.text)
        k = self.text[self.pos:end].strip()
        if not k or '"' in k or STR in k:
            raise self.fail("expected an object key")
        self.pos = end
        return k

    def expect(self, ch: str) -> None:
        self.skip_ws()
        if not self.startswith(ch):
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def obj(self, depth: int) -> dict:
        self.expect("{")
        out: dict = {}
        self.skip_ws()
        if self.startswith("}"):
            self.pos += 1
            return out
        while True:
            k = self.key()
            self.expect(":")
            out[k] = self.value(depth + 1)
            self.skip_ws()
            if self.startswith(","):
                self.pos += 1
                continue
            self.expect("}")
            return out

    def array(self, depth: int) -> list:
        self.expect("[")
        out: list = []
        self.skip_ws()
        if self.startswith("]"):
            self.pos += 1
            return out
        while True:
            out.append(self.value(depth + 1))
            self.skip_ws()
            if self.startswith(","):
                self.pos += 1
                continue
            self.expect("]")
            return out


def parse_value(text: str) -> Any:
    """Parse one complete tool-syntax value; ``ToolSyntaxError`` if malformed or trailing junk."""
    r = _Reader(text)
    v = r.value()
    r.skip_ws()
    if r.pos != len(text):
        raise r.fail("trailing text after value")
    return v


_CALL_HEAD = re.compile(r"\s*call:([^\s{}:]+)\s*(?=\{)")


def parse_tool_call(body: str) -> tuple[str, dict]:
    """Parse the text between ``<|tool_call>`` and ``<tool_call|>``: ``call:NAME{k:v,...}``."""
    m = _CALL_HEAD.match(body)
    if not m:
        raise ToolSyntaxError(f"tool call does not start with 'call:NAME{{': {body!r}")
    args = parse_value(body[m.end():])
    if not isinstance(args, dict):  # pragma: no cover - the head regex guarantees a '{'
        raise ToolSyntaxError(f"tool call arguments are not an object: {body!r}")
    return m.group(1), args
