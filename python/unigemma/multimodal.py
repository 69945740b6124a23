"""Media in the prompt: the projector, embedding caches and the prompt layout.

Prompt layout (reference §6.4; the transformers processor's expansion): the chat template writes
one placeholder per media item; each is replaced *in the text* before tokenization by

    image:  <|image>  + N x <|image|> + <image|>
    audio:  <|audio>  + N x <|audio|> + <audio|>
    video:  "MM:SS <|image>" + N_f x <|video|> + "<image|>" per sampled frame, joined by " "

so the timestamps merge with the surrounding text exactly as in the reference. The soft-token
rows (the embedders' outputs, not scaled) then replace the placeholder tokens in order: image
and video rows are bidirectional within their block on sliding layers, audio rows causal
(``Context.eval`` kinds 1 / 2).

Cache keys: the generation context remembers, per position, the token id, or for a soft token
``(token id, media digest, index)``, so a later turn reuses the cache through an identical image
and never through a different one with the same placeholder ids.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from .preprocess.errors import MediaError

KIND_TOKEN, KIND_BIDIRECTIONAL, KIND_CAUSAL = 0, 1, 2
PLACEHOLDERS = {"image": "<|image|>", "audio": "<|audio|>", "video": "<|video|>"}
MARKERS = {"boi": "<|image>", "eoi": "<image|>", "boa": "<|audio>", "eoa": "<audio|>"}
IMAGE_BUDGETS = (70, 140, 280, 560, 1120)


@dataclass
class MediaEmbedding:
    """Soft-token rows of one media item (video: one block per sampled frame)."""
    kind: str                       # "image" | "audio" | "video"
    blocks: list[np.ndarray]        # float32 (n_i, H) per block (image/audio: one block)
    digest: str
    timestamps: list[str] = field(default_factory=list)   # video: "MM:SS" per frame

    @property
    def n_tokens(self) -> int:
        return sum(int(b.shape[0]) for b in self.blocks)


def media_source(part: dict) -> Any:
    """The media object of a chat content part: part[kind], else part["path"] / part["url"]
    (local paths and file:// URLs only: unigemma never fetches from the network)."""
    kind = part.get("type")
    for key in (kind, "path", "url"):
        if key in part and part[key] is not None:
            src = part[key]
            if isinstance(src, str):
                if src.startswith("file://"):
                    return src[len("file://"):]
                if src.startswith(("http://", "https://")):
                    raise MediaError(f"[{kind}] {src}: URLs are not fetched (no network access); download the "
                                     "file and pass its path")
            return src
    raise MediaError(f"[{kind}] content part has no {kind!r}, 'path' or 'url' entry: {sorted(part)}")


def normalize_media(media) -> list[tuple[str, Any]]:
    """``generate(media=...)`` items -> (kind, source): ``(kind, source)`` pairs or chat-style
    parts ``{"type": kind, kind: source}``."""
    if isinstance(media, (dict, tuple)) and not isinstance(media, list):
        media = [media]
    out = []
    for i, item in enumerate(media or []):
        if isinstance(item, dict):
            kind = item.get("type")
            if kind not in PLACEHOLDERS:
                raise MediaError(f"media item {i}: 'type' must be image, audio or video, got {kind!r}")
            out.append((kind, media_source(item)))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            if item[0] not in PLACEHOLDERS:
                raise MediaError(f"media item {i}: unknown media kind {item[0]!r} (expected image, audio or video)")
            out.append((item[0], item[1]))
        else:
            raise MediaError(f"media item {i}: expected a (kind, source) pair or a {{'type': kind, kind: source}} "
                             f"dict, got {type(item).__name__}")
    return out


def collect_media(messages) -> list[tuple[str, Any]]:
    """(kind, source) of every media part, in the order the chat template writes placeholders."""
    out = []
    for msg in messages or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in PLACEHOLDERS:
                    out.append((part["type"], media_source(part)))
    return out


def _source_key(kind: str, src: Any, extra: tuple) -> str | None:
    """Cheap identity of a media source for the embedding cache (None: do not cache)."""
    if isinstance(src, (str, os.PathLike)):
        try:
            st = os.stat(src)
        except OSError:
            return None
        return f"{kind}:path:{os.path.abspath(os.fspath(src))}:{st.st_mtime_ns}:{st.st_size}:{extra}"
    if isinstance(src, (bytes, bytearray)):
        return f"{kind}:bytes:{hashlib.sha1(src).hexdigest()}:{extra}"
    if isinstance(src, np.ndarray):
        return f"{kind}:array:{src.dtype}:{src.shape}:{hashlib.sha1(np.ascontiguousarray(src)).hexdigest()}:{extra}"
    return None


class MediaEncoder:
    """The loaded projector plus preprocessing, with a small LRU cache of embeddings (a chat
    re-renders earlier turns each time; their media are not embedded again)."""

    def __init__(self, path, hidden: int, n_threads: int = 0, image_tokens: int = 280, video_tokens: int = 70,
                 video_frames: int = 32, cache_items: int = 16, backend: str = "cpu") -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise _core.InputError(f"mmproj file not found: {self.path}")
        self.proj = _core.MMProjector(self.path, n_threads=n_threads, backend=backend)
        if self.proj.hidden_size != hidden:
            raise _core.ModelError(f"[mmproj] {self.path} projects to width {self.proj.hidden_size}, but the text "
                                   f"model's hidden size is {hidden}: projector and model do not belong together")
        for name, v in (("image_tokens", image_tokens), ("video_tokens", video_tokens)):
            if v not in IMAGE_BUDGETS:
                raise ValueError(f"{name} must be one of {IMAGE_BUDGETS}, got {v}")
        self.image_tokens, self.video_tokens, self.video_frames = image_tokens, video_tokens, video_frames
        self._cache: OrderedDict[str, MediaEmbedding] = OrderedDict()
        self._cache_items = cache_items

    def _need(self, what: str) -> None:
        has = self.proj.has_audio if what == "audio" else self.proj.has_vision
        if not has:
            raise MediaError(f"[{what}] the projector {os.path.basename(self.path)} has no "
                             f"{'audio' if what == 'audio' else 'vision'} embedder")

    def image_rows(self, src, max_soft_tokens: int | None = None) -> np.ndarray:
        from .preprocess.image import load_image, preprocess_image

        self._need("image")
        p = preprocess_image(load_image(src), max_soft_tokens or self.image_tokens)
        return self.proj.embed_image(p.pixel_values, p.positions)

    def audio_rows(self, src) -> np.ndarray:
        from .preprocess.audio import audio_frames, load_audio

        self._need("audio")
        return self.proj.embed_audio(audio_frames(load_audio(src)))

    def video_blocks(self, src) -> tuple[list[np.ndarray], list[str]]:
        from .preprocess.video import load_video, preprocess_video, video_prompt_timestamps

        self._need("video")
        v = load_video(src, num_frames=self.video_frames)
        blocks = [self.proj.embed_image(p.pixel_values, p.positions) for p in preprocess_video(v, self.video_tokens)]
        return blocks, video_prompt_timestamps(v.timestamps)

    def embed(self, kind: str, src) -> MediaEmbedding:
        extra = (self.image_tokens,) if kind == "image" else (self.video_tokens, self.video_frames)
        key = _source_key(kind, src, extra)
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if kind == "image":
            blocks, stamps = [self.image_rows(src)], []
        elif kind == "audio":
            blocks, stamps = [self.audio_rows(src)], []
        elif kind == "video":
            blocks, stamps = self.video_blocks(src)
        else:
            raise MediaError(f"unknown media kind {kind!r} (expected image, audio or video)")
        h = hashlib.sha1(kind.encode())
        for b in blocks:
            h.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
        emb = MediaEmbedding(kind, blocks, h.hexdigest(), stamps)
        if key is not None:
            self._cache[key] = emb
            while len(self._cache) > self._cache_items:
                self._cache.popitem(last=False)
        return emb


@dataclass
class MediaPrompt:
    """A tokenized prompt with soft-token rows: what ``Model._prefill`` evaluates."""
    ids: list[int]
    keys: list                     # cache keys (int, or (id, digest, index) for soft tokens)
    kinds: np.ndarray | None       # int8 [len(ids)] or None for text only
    rows: dict[int, np.ndarray]    # position -> float32 (H,) row

    def slice_inputs(self, start: int, hidden: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(embeddings [n, H], kinds [n]) for positions start.. (None, None) if there are no soft tokens."""
        if self.kinds is None or not self.kinds[start:].any():
            return None, None
        n = len(self.ids) - start
        e = np.zeros((n, hidden), dtype=np.float32)
        for p, r in self.rows.items():
            if p >= start:
                e[p - start] = r
        return e, np.ascontiguousarray(self.kinds[start:])


def expand_placeholders(text: str, media: list[MediaEmbedding]) -> str:
    """Replace the i-th media placeholder of ``text`` by media[i]'s expansion (see module doc)."""
    out, pos = [], 0
    for i, m in enumerate(media):
        ph = PLACEHOLDERS[m.kind]
        j = text.find(ph, pos)
        if j < 0:
            raise MediaError(f"the prompt has fewer media placeholders than media items: no {ph} for item {i + 1} "
                             f"({m.kind})")
        out.append(text[pos:j])
        if m.kind == "image":
            out.append(MARKERS["boi"] + ph * m.n_tokens + MARKERS["eoi"])
        elif m.kind == "audio":
            out.append(MARKERS["boa"] + ph * m.n_tokens + MARKERS["eoa"])
        else:
            out.append(" ".join(f"{t} {MARKERS['boi']}{ph * int(b.shape[0])}{MARKERS['eoi']}"
                                for t, b in zip(m.timestamps, m.blocks)))
        pos = j + len(ph)
    rest = text[pos:]
    for ph in PLACEHOLDERS.values():
        if ph in rest:
            raise MediaError(f"the prompt has more media placeholders than media items ({ph} left over)")
    return "".join(out) + rest


def assign_rows(ids: list[int], media: list[MediaEmbedding], placeholder_ids: dict[str, int]) -> MediaPrompt:
    """Pair the placeholder tokens of ``ids`` with the media rows, in order."""
    if not media:
        return MediaPrompt(ids, list(ids), None, {})
    kinds = np.zeros(len(ids), dtype=np.int8)
    keys: list = list(ids)
    rows: dict[int, np.ndarray] = {}
    ph_ids = set(placeholder_ids.values())
    queue = []  # (kind, digest, block rows)
    for m in media:
        for b in m.blocks:
            queue.append((m.kind, m.digest, b))
    qi, j, counter = 0, 0, 0
    for p, t in enumerate(ids):
        if t not in ph_ids:
            continue
        if qi >= len(queue):
            raise MediaError("the prompt holds more soft-token placeholders than the media provide (a literal "
                             "placeholder token in the text?)")
        kind, digest, block = queue[qi]
        if t != placeholder_ids[kind]:
            raise MediaError(f"placeholder token {t} where a {kind} soft token was expected")
        kinds[p] = KIND_CAUSAL if kind == "audio" else KIND_BIDIRECTIONAL
        rows[p] = block[j]
        keys[p] = (t, digest, counter)
        j += 1
        counter += 1
        if j == block.shape[0]:
            qi, j = qi + 1, 0
    if qi != len(queue):
        raise MediaError("the tokenized prompt holds fewer soft-token placeholders than the media provide")
    return MediaPrompt(ids, keys, kinds, rows)
