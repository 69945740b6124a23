"""Hand-assembled GGUF bytes for reader tests: every field can be set to a wrong value, which
a well-behaved writer (gguf.GGUFWriter) would never produce."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_FMT = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i", T_F32: "<f",
        T_BOOL: "<B", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b) if length is None else length) + b


def value(vtype: int, v) -> bytes:
    if vtype == T_STR:
        return gstr(v)
    if vtype == T_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack(_FMT[vtype], v)


@dataclass
class Tensor:
    name: str
    ne: list[int]
    ggml_type: int = 0  # F32
    offset: int | None = None  # None: packed in order, aligned
    data: bytes | None = None


@dataclass
class RawGGUF:
    version: int = 3
    kv: list[tuple[str, int, object]] = field(default_factory=list)  # (key, vtype, value)
    tensors: list[Tensor] = field(default_factory=list)
    alignment: int = 32
    n_tensors: int | None = None  # override the declared counts
    n_kv: int | None = None
    magic: bytes = b"GGUF"

    def add(self, key, vtype, v):
        self.kv.append((key, vtype, v))
        return self

    def prefix(self) -> bytes:
        """Magic, version and the two counts only: a test appends hand-made entries."""
        return self.magic + struct.pack("<IQQ", self.version, self.n_tensors or 0, self.n_kv or 0)

    def build(self) -> bytes:
        out = bytearray(self.magic)
        out += struct.pack("<I", self.version)
        out += struct.pack("<QQ", len(self.tensors) if self.n_tensors is None else self.n_tensors,
                           len(self.kv) if self.n_kv is None else self.n_kv)
        for k, t, v in self.kv:
            out += gstr(k) + struct.pack("<I", t) + value(t, v)
        offsets, cursor, blobs = [], 0, []
        for t in self.tensors:
            n = 1
            for d in t.ne:
                n *= d
            blob = t.data if t.data is not None else bytes(4 * n if t.ggml_type == 0 else 0)
            off = cursor if t.offset is None else t.offset
            offsets.append(off)
            blobs.append((off, blob))
            if len(blob):  # an empty blob may carry an absurd offset on purpose; it takes no space
                cursor = max(cursor, off + len(blob))
            cursor = (cursor + self.alignment - 1) // self.alignment * self.alignment
        for t, off in zip(self.tensors, offsets):
            out += gstr(t.name) + struct.pack("<I", len(t.ne)) + b"".join(struct.pack("<Q", d & (2**64 - 1)) for d in t.ne)
            out += struct.pack("<IQ", t.ggml_type, off)
        start = (len(out) + self.alignment - 1) // self.alignment * self.alignment
        out += bytes(start - len(out))
        data = bytearray(cursor)
        for off, blob in blobs:
            if off + len(blob) <= len(data):
                data[off:off + len(blob)] = blob
        return bytes(out + data)
