"""Hugging Face `tokenizer.json` (BPE, byte fallback) -> GGUF tokenizer metadata in the
form llama.cpp's `gemma4` tokenizer reads (see shared/reference §2.6)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConversionError

TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# Kept visible in detokenized text so chat parsers can read them (llama.cpp does the same).
VISIBLE_TOKENS = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                  "<tool_response|>", '<|"|>'}
_BYTE_RE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass
class TokenizerData:
    tokens: list[str]
    scores: list[float]
    token_types: list[int]
    merges: list[str]
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unknown/padding/mask
    add_bos: bool = True
    add_eos: bool = False
    chat_template: str | None = None


def _token_text(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return v.get("content")
    return None


def load_tokenizer(model_dir: Path, config: dict) -> TokenizerData:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(f"[convert] '{model_dir}' has no tokenizer.json")
    try:
        tj = json.loads(path.read_text(encoding="utf-8"))
        model = tj["model"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise ConversionError(f"[convert] '{path}' is not a valid tokenizer.json ({e})") from e
    if model.get("type") != "BPE":
        raise ConversionError(f"[convert] tokenizer.json model type {model.get('type')!r} is not BPE")
    vocab: dict[str, int] = model.get("vocab", {})
    added = tj.get("added_tokens", [])
    tc_path = model_dir / "tokenizer_config.json"
    try:
        tc = json.loads(tc_path.read_text(encoding="utf-8")) if tc_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"[convert] '{tc_path}' is not valid JSON ({e})") from e
    # ids are the union of the base vocab and added tokens (Gemma lists its specials in both)
    n = max([*vocab.values(), *(t["id"] for t in added)], default=-1) + 1
    tokens: list[str | None] = [None] * n
    types = [TOKEN_NORMAL] * n
    for text, i in vocab.items():
        tokens[i] = text
        if _BYTE_RE.match(text):
            types[i] = TOKEN_BYTE
    for t in added:
        i = t["id"]
        if tokens[i] is None:  # added beyond the base vocab
            tokens[i] = t["content"]
        # HF `tokenizers` matches every added token whole before BPE, also one that is in the base
        # vocab (Gemma lists <|turn> etc. in both) and not in tokenizer_config's special tokens;
        # a GGUF tokenizer only does that for control / user-defined tokens, so type them so.
        if tokens[i] == t["content"] and types[i] != TOKEN_BYTE:
            types[i] = TOKEN_CONTROL if t.get("special") else TOKEN_USER_DEFINED
    # control = the tokenizer's special tokens (bos/eos/unk/pad/mask and the extra specials)
    by_text = {}
    for i, text in enumerate(tokens):
        if text is not None:
            by_text.setdefault(text, i)
    special_texts = [_token_text(tc.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")]
    extra = tc.get("extra_special_tokens") or tc.get("additional_special_tokens") or []
    if isinstance(extra, dict):
        extra = list(extra.values())
    special_texts += [_token_text(x) for x in extra]
    for text in special_texts:
        if text is not None and text in by_text:
            types[by_text[text]] = TOKEN_CONTROL
    for i, text in enumerate(tokens):
        if text is None:  # ids with no token: placeholder, never produced
            tokens[i] = f"[PAD{i}]"
            types[i] = TOKEN_UNUSED
        elif text in VISIBLE_TOKENS:
            types[i] = TOKEN_USER_DEFINED

    merges = []
    for m in model.get("merges", []):
        if isinstance(m, str):
            merges.append(m)
        else:  # newer tokenizer.json: [left, right]; a space inside a piece is written as U+0120
            merges.append(" ".join(part.replace(" ", "\u0120") for part in m))

    special: dict[str, int] = {}
    cfg_text = config.get("text_config", config)
    for gguf_name, tc_key, cfg_key in (("bos", "bos_token", "bos_token_id"), ("eos", "eos_token", "eos_token_id"),
                                       ("unknown", "unk_token", None), ("padding", "pad_token", "pad_token_id"),
                                       ("mask", "mask_token", None)):
        text = _token_text(tc.get(tc_key))
        if text is not None and text in by_text:
            special[gguf_name] = by_text[text]
        elif cfg_key is not None:
            v = config.get(cfg_key, cfg_text.get(cfg_key))
            if isinstance(v, list):
                v = v[0] if v else None
            if isinstance(v, int) and 0 <= v < n:
                special[gguf_name] = v

    template = None
    tpl_file = model_dir / "chat_template.jinja"
    if tpl_file.is_file():
        template = tpl_file.read_text(encoding="utf-8")
    elif isinstance(tc.get("chat_template"), str):
        template = tc["chat_template"]

    return TokenizerData(tokens=tokens, scores=[-1000.0] * n, token_types=types, merges=merges,
                         special_ids=special, add_bos=True, add_eos=bool(tc.get("add_eos_token", False)),
                         chat_template=template)


def write_tokenizer(writer, tok: TokenizerData, suppress_tokens=None):
    writer.add_tokenizer_model("gemma4")
    writer.add_token_list(tok.tokens)
    writer.add_token_scores(tok.scores)
    writer.add_token_types(tok.token_types)
    if tok.merges:
        writer.add_token_merges(tok.merges)
    setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unknown": writer.add_unk_token_id,
               "padding": writer.add_pad_token_id, "mask": writer.add_mask_token_id}
    for k, v in tok.special_ids.items():
        setters[k](v)
    writer.add_add_bos_token(tok.add_bos)
    writer.add_add_eos_token(tok.add_eos)
    writer.add_add_space_prefix(False)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)
