"""Lazy reader for (sharded) safetensors checkpoints, without torch.

Each shard is memory-mapped; a tensor is read only when asked for, so the converter's peak
memory stays near its largest tensor. Layout of a shard: u64 header length N, N bytes of
JSON {name: {dtype, shape, data_offsets: [begin, end)}}, then the data (offsets relative
to the end of the header). Every offset and size is checked before use."""
from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConversionError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


@dataclass
class TensorRef:
    name: str
    dtype: str          # safetensors dtype string
    shape: tuple
    shard: "Shard"
    begin: int          # absolute file offsets
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    def raw(self) -> np.ndarray:
        """The stored values (BF16 as uint16 bit patterns), a view into the mapping."""
        dt = np.dtype(_DTYPES[self.dtype])
        return np.frombuffer(self.shard.buffer, dtype=dt, count=self.nbytes // dt.itemsize,
                             offset=self.begin).reshape(self.shape)

    def to_float32(self) -> np.ndarray:
        """A float32 copy (never a view), after which the mapped pages are released."""
        a = self.raw()
        if self.dtype == "BF16":
            # bf16 is the high half of an f32: widening is a 16-bit shift, exact
            out = (a.astype(np.uint32) << 16).view(np.float32)
        else:
            out = a.astype(np.float32, copy=True)
        del a
        self.release()
        return out

    def release(self):
        """Drop this tensor's pages of the file mapping from the process's resident set, so
        reading a whole checkpoint does not grow RSS to the checkpoint's size."""
        page = mmap.PAGESIZE
        start = self.begin // page * page
        try:
            self.shard.buffer.madvise(mmap.MADV_DONTNEED, start, self.end - start)
        except (AttributeError, ValueError, OSError):
            pass  # advisory only


class Shard:
    def __init__(self, path: Path):
        self.path = path
        try:
            self._f = open(path, "rb")
        except OSError as e:
            raise ConversionError(f"[convert] cannot open shard '{path}': {e.strerror}") from e
        size = path.stat().st_size
        if size < 8:
            raise ConversionError(f"[convert] shard '{path}' is truncated ({size} bytes)")
        self.buffer = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", self.buffer[:8])
        if n > size - 8:
            raise ConversionError(f"[convert] shard '{path}': header length {n} exceeds the file size {size}")
        try:
            header = json.loads(bytes(self.buffer[8:8 + n]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"[convert] shard '{path}': header is not valid JSON ({e})") from e
        if not isinstance(header, dict):
            raise ConversionError(f"[convert] shard '{path}': header is not a JSON object")
        self.metadata = header.pop("__metadata__", {}) or {}
        base = 8 + n
        self.tensors: dict[str, TensorRef] = {}
        for name, info in header.items():
            try:
                dtype, shape, (b, e) = info["dtype"], tuple(int(x) for x in info["shape"]), info["data_offsets"]
            except (KeyError, TypeError, ValueError) as ex:
                raise ConversionError(f"[convert] shard '{path}': tensor '{name}' has a malformed entry") from ex
            if dtype not in _DTYPES:
                raise ConversionError(f"[convert] shard '{path}': tensor '{name}' has unsupported dtype {dtype}")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if any(s < 0 for s in shape) or not (0 <= b <= e) or base + e > size:
                raise ConversionError(f"[convert] shard '{path}': tensor '{name}' data range [{b}, {e}) is invalid")
            if (e - b) != count * np.dtype(_DTYPES[dtype]).itemsize:
                raise ConversionError(
                    f"[convert] shard '{path}': tensor '{name}' has {e - b} bytes, shape {list(shape)} {dtype} needs "
                    f"{count * np.dtype(_DTYPES[dtype]).itemsize}")
            self.tensors[name] = TensorRef(name, dtype, shape, self, base + b, base + e)

    def close(self):
        try:
            self.buffer.close()
        except BufferError:
            pass  # a NumPy view still holds the map; it is released with the last view
        self._f.close()


class Checkpoint:
    """All tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
    `model.safetensors.index.json` (every listed shard must exist)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        self.shards: list[Shard] = []
        self.tensors: dict[str, TensorRef] = {}
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise ConversionError(f"[convert] '{index}' is not a valid safetensors index") from e
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (self.directory / f).is_file()]
            if missing:
                raise ConversionError(f"[convert] missing shard(s) listed in {index.name}: {', '.join(missing)}")
            for f in files:
                self._add(Shard(self.directory / f))
            absent = [k for k, f in weight_map.items() if k not in self.tensors]
            if absent:
                raise ConversionError(f"[convert] tensor '{absent[0]}' is listed in {index.name} but not in its shard")
        else:
            files = sorted(self.directory.glob("*.safetensors"))
            if not files:
                raise ConversionError(f"[convert] no *.safetensors files in '{self.directory}'")
            for f in files:
                self._add(Shard(f))

    def _add(self, shard: Shard):
        self.shards.append(shard)
        for name, ref in shard.tensors.items():
            if name in self.tensors:
                raise ConversionError(f"[convert] tensor '{name}' appears in two shards")
            self.tensors[name] = ref

    def close(self):
        for s in self.shards:
            s.close()
