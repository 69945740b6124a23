"""Constrained decoding for OpenAI ``response_format``: JSON objects / JSON-schema values.

    >>> vocab = token_vocab(model.tokenizer)          # built once per tokenizer (~0.2 s), cached
    >>> c = JsonConstraint(vocab, schema_from_response_format(request["response_format"]))
    >>> while True:
    ...     logits = ...                              # float32 [n_vocab]
    ...     c.mask_logits(logits)                     # disallowed tokens -> -inf
    ...     t = sample(logits)
    ...     if t in vocab.eog_ids: break              # only allowed once the value is complete
    ...     c.accept(t)

The matcher works on bytes (csrc/grammar/json_grammar.h); the schema subset and the choices it
makes (property order, whitespace, canonical enum spelling) are listed in
csrc/grammar/json_schema.h. In short: type (and lists of types), properties, required,
additionalProperties, enum, const, items, prefixItems, minItems, maxItems, minLength, maxLength,
anyOf, oneOf (as anyOf), single-element allOf, local $ref; anything else (pattern, format,
minimum, ...) raises ``InputError`` (a ``ValueError``) naming the keyword. Properties are
generated in the order of ``properties``; at most ``max_whitespace`` whitespace bytes per gap.

Forced Gemma 4 tool calls (OpenAI ``tool_choice`` naming a function) use the same matcher in the
tool-call dialect: ``tool_call_constraint(tokenizer, parameters)`` generates the argument object
``{k:v,...}`` of ``<|tool_call>call:NAME{...}<tool_call|>`` (rules in
csrc/grammar/tool_dialect.h): bare keys in dictsort order, declared keys only, strings
between ``<|"|>`` tokens with raw content, no whitespace; ``done`` once the object closes.
"""
from __future__ import annotations

import json
import threading
import weakref
from typing import Any

import numpy as np

from . import _core

TokenVocab = _core.TokenVocab

_vocabs: "weakref.WeakKeyDictionary[Any, TokenVocab]" = weakref.WeakKeyDictionary()
_vocabs_lock = threading.Lock()


def token_vocab(tokenizer) -> TokenVocab:
    """The vocabulary index (byte trie of every usable token) of a ``_core.Tokenizer``, built on
    first use and cached for as long as the tokenizer lives. EOG ids: ``tokenizer.eog_ids``."""
    with _vocabs_lock:
        v = _vocabs.get(tokenizer)
        if v is None:
            v = TokenVocab(tokenizer)
            _vocabs[tokenizer] = v
        return v


def schema_from_response_format(rf: dict) -> dict | None:
    """The schema for ``JsonConstraint`` from an OpenAI ``response_format``:
    ``{"type": "json_object"}`` -> None (any JSON object);
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": ...}}`` ->
    the schema (absent: None, any JSON object; ``strict`` is ignored: the schema is always
    enforced). Anything else, ``{"type": "text"}`` included (it needs no constraint), raises
    ValueError."""
    if not isinstance(rf, dict):
        raise ValueError(f"response_format must be an object, not {type(rf).__name__}")
    kind = rf.get("type")
    if kind == "json_object":
        return None
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            raise ValueError("response_format json_schema: 'json_schema' must be an object with a 'schema'")
        name = js.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError("response_format json_schema: 'name' must be a string")
        schema = js.get("schema")
        if schema is None:
            return None
        if not isinstance(schema, (dict, bool)):
            raise ValueError("response_format json_schema: 'schema' must be an object")
        return schema
    if kind == "text":
        raise ValueError("response_format type 'text' is unconstrained: no JsonConstraint is needed")
    raise ValueError(f"unsupported response_format type {kind!r} (expected 'json_object' or 'json_schema')")


_TOOL_QUOTE = '<|"|>'


class JsonConstraint:
    """Per-request logits mask that makes the generated text one JSON value: any JSON object
    (schema None, OpenAI's json_object mode) or a value valid under ``schema`` (a dict). Once
    the value is complete only the EOG tokens are allowed. Raises ValueError (``InputError``)
    for bad or unsupported schemas."""

    def __init__(self, vocab: TokenVocab, schema: dict | None = None, *, max_whitespace: int = 16,
                 dialect: str = "json") -> None:
        if schema is None:
            text = None
        else:
            if not isinstance(schema, (dict, bool)):
                raise ValueError(f"[json_schema] a schema must be a dict, not {type(schema).__name__}")
            try:
                text = json.dumps(schema, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise ValueError(f"[json_schema] the schema is not JSON: {e}") from None
        self.vocab = vocab
        self.dialect = dialect
        self._m = _core.JsonMatcher(vocab, text, max_whitespace, dialect)
        self._eog = frozenset(vocab.eog_ids)
        self.n_accepted = 0

    def mask_logits(self, logits: np.ndarray) -> None:
        """In place on float32 [n_vocab] logits (contiguous, writable): disallowed -> -inf."""
        if not isinstance(logits, np.ndarray) or logits.dtype != np.float32 or logits.ndim != 1:
            raise TypeError("logits must be a 1-D float32 numpy array")
        self._m.mask_logits(logits)

    def allowed_tokens(self) -> np.ndarray:
        """bool [n_vocab]: the tokens allowed next."""
        return self._m.allowed_tokens()

    def is_allowed(self, token_id: int) -> bool:
        return self._m.is_allowed(int(token_id))

    def accept(self, token_id: int) -> None:
        """Advance by one token; ValueError (state unchanged) if it was not allowed."""
        t = int(token_id)
        if not self._m.accept_token(t):
            if 0 <= t < self.vocab.n_vocab:
                what = "the end-of-generation token" if t in self._eog else repr(self.vocab.piece(t))
            else:
                what = "out of range"
            raise ValueError(f"[json_grammar] token {t} ({what}) is not allowed here")
        self.n_accepted += 1

    def accept_text(self, text: str | bytes) -> None:
        """Advance by text the caller emitted itself (e.g. a forced prefix); ValueError if it
        does not fit. In the tool-call dialect a ``str`` may spell the delimiter token as
        ``<|"|>``; ``bytes`` go to the matcher as they are (the delimiter is b"\\xff" there)."""
        if isinstance(text, str) and self.dialect == "gemma4_tool":
            data = b"\xff".join(part.encode() for part in text.split(_TOOL_QUOTE))
        else:
            data = text.encode() if isinstance(text, str) else bytes(text)
        if not self._m.accept_bytes(data):
            raise ValueError(f"[json_grammar] text {data!r} does not fit the constraint here")

    @property
    def done(self) -> bool:
        """A complete value was produced: only EOG is allowed now."""
        return self._m.done

    @property
    def complete(self) -> bool:
        """A complete value was produced (EOG allowed). Differs from ``done`` only for a
        top-level number, which more digits could extend."""
        return self._m.complete


def tool_call_constraint(tokenizer, parameters: dict | None) -> JsonConstraint:
    """Constraint for the arguments of a forced Gemma 4 tool call: after the caller has emitted
    ``<|tool_call>call:NAME`` itself, the allowed tokens spell an argument object ``{k:v,...}``
    in Gemma 4's tool syntax whose value validates against ``parameters`` (the function's JSON
    schema; same subset as JsonConstraint). ``done`` turns true as soon as the object closes;
    the caller then appends ``<tool_call|>``. None, or an object schema without properties,
    allows only ``{}``: the dialect writes declared keys only (additionalProperties produces
    nothing). Raises ValueError (``InputError``, "[tool_schema] ...") for unsupported schemas,
    naming the keyword, for property names that cannot be written as bare keys, for a
    non-object schema, and for a tokenizer without the ``<|"|>`` token."""
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    elif not isinstance(parameters, dict):
        raise ValueError(f"[tool_schema] parameters must be a dict, not {type(parameters).__name__}")
    vocab = token_vocab(tokenizer)
    if vocab.delimiter_id < 0:
        raise ValueError('[tool_schema] the tokenizer has no <|"|> token: not a Gemma 4 vocabulary')
    return JsonConstraint(vocab, parameters, max_whitespace=0, dialect="gemma4_tool")


_piece_ids: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _piece_index(tokenizer) -> dict:
    """bytes -> token id of every usable token of ``tokenizer`` (the vocabulary index's pieces;
    the lowest id wins where pieces repeat). Built once per tokenizer."""
    with _vocabs_lock:
        idx = _piece_ids.get(tokenizer)
    if idx is None:
        vocab = token_vocab(tokenizer)
        idx = {}
        for i in range(vocab.n_vocab - 1, -1, -1):
            p = vocab.piece(i)
            if p and vocab.is_usable(i):
                idx[p] = i
        with _vocabs_lock:
            _piece_ids[tokenizer] = idx
    return idx


class ToolChoiceConstraint:
    """tool_choice "required" over several tools: after ``<|tool_call>call:`` the reply spells
    one of the tools' names (tokens whose piece continues some name), then that function's
    arguments under its parameter schema (``tool_call_constraint``). Where one name is a prefix
    of another ("get", "get_weather"), the shorter one ends when the argument object opens.
    Same interface as JsonConstraint: mask_logits, accept, done."""

    def __init__(self, tokenizer, functions: dict) -> None:
        if not functions or any(not isinstance(n, str) or not n for n in functions):
            raise ValueError("[tool_schema] tool_choice needs at least one named function")
        self._tok = tokenizer
        self._functions = dict(functions)  # name -> parameters schema (or None)
        for name, params in self._functions.items():
            tool_call_constraint(tokenizer, params)  # validate every schema up front
        self._idx = _piece_index(tokenizer)
        self._open = self._idx.get(b"{")
        self.name = ""
        self._args: JsonConstraint | None = None
        self._allowed = self._name_tokens()  # for the current name prefix

    def _name_tokens(self) -> set:
        ids = set()
        for n in self._functions:
            if not n.startswith(self.name):
                continue
            rest = n[len(self.name):].encode()
            for k in range(1, len(rest) + 1):
                i = self._idx.get(rest[:k])
                if i is not None:
                    ids.add(i)
        if self.name in self._functions and self._open is not None:
            ids.add(self._open)  # the name is complete: the arguments may open
        return ids

    def mask_logits(self, logits: np.ndarray) -> None:
        if self._args is not None:
            self._args.mask_logits(logits)
            return
        ids = np.fromiter(self._allowed, dtype=np.int64)
        keep = logits[ids].copy()
        logits[:] = -np.inf
        logits[ids] = keep

    def accept(self, token_id: int) -> None:
        if self._args is not None:
            self._args.accept(token_id)
            return
        if token_id not in self._allowed:
            raise ValueError(f"token {token_id} does not continue a tool name after {self.name!r}")
        if token_id == self._open and self.name in self._functions:
            self._args = tool_call_constraint(self._tok, self._functions[self.name])
            self._args.accept(token_id)
            return
        self.name += self._tok.token_to_piece(int(token_id), special=False).decode("utf-8")
        if self.name in self._functions and not any(n != self.name and n.startswith(self.name)
                                                    for n in self._functions):
            self._args = tool_call_constraint(self._tok, self._functions[self.name])
        else:
            self._allowed = self._name_tokens()

    @property
    def done(self) -> bool:
        return self._args is not None and self._args.done
