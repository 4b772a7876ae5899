"""The header of a GGUF file (llama.cpp's format, version 2 and 3): metadata, tensor table, tensor bytes.

Written from the format's specification (ggml's docs/gguf.md) because `gguf.GGUFReader`
builds a numpy memmap view for every string of the metadata: ~100k of them for a 49k-token
vocabulary, several seconds per load on a 2-core machine. Here the header is parsed from one
bytes object with `struct` (~0.1 s) and each tensor is one slice of a read-only memmap;
dequantisation stays with `gguf.quants`. Layout: magic "GGUF", version u32, tensor count u64,
metadata count u64; each metadata entry = key (u64 length + UTF-8), value type u32, value
(arrays: element type u32, count u64, elements); each tensor = name, n_dims u32, dims u64
(innermost first), ggml type u32, offset u64 from the data section, which starts at the
next multiple of `general.alignment` (default 32). Little-endian files only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GGUFFile", "GGUFTensor"]

_MAGIC = b"GGUF"
# value type -> struct format of one scalar (8 = string, 9 = array: handled apart)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}


@dataclass
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (outermost first): (rows, columns) for a matrix
    ggml_type: int  # gguf.GGMLQuantizationType value
    data: (
        np.ndarray
    )  # the stored bytes (uint8) or elements (F32/F16/...), as `gguf.quants.dequantize` takes them


class GGUFFile:
    """`fields`: metadata {key: str | int | float | bool | list}; `tensors`: in file order."""

    def __init__(self, path: Path | str) -> None:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import quant_shape_to_byte_shape

        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(1 << 16)
            if head[:4] != _MAGIC:
                raise ValueError(f"{self.path}: not a GGUF file (magic {head[:4]!r}, expected {_MAGIC!r})")
            version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
            if version not in (2, 3):
                raise ValueError(f"{self.path}: GGUF version {version} (big-endian or unknown); need 2 or 3")
            # The header is usually a few MB (the vocabulary); read until it parses.
            size = self.path.stat().st_size
            buf = head + f.read(min(size, 64 << 20) - len(head))
        self._buf, self._pos = buf, 24
        self.fields: dict[str, Any] = {}
        infos = []
        try:
            for _ in range(n_kv):
                key = self._str()
                self.fields[key] = self._value(self._u32())
            for _ in range(n_tensors):
                name = self._str()
                n_dims = self._u32()
                dims = struct.unpack_from(f"<{n_dims}Q", buf, self._pos)
                self._pos += 8 * n_dims
                ggml_type, offset = struct.unpack_from("<IQ", buf, self._pos)
                self._pos += 12
                infos.append((name, tuple(reversed(dims)), ggml_type, offset))
        except struct.error as exc:
            raise ValueError(f"{self.path}: the GGUF header is cut off or larger than 64 MB ({exc})") from exc
        align = int(self.fields.get("general.alignment", 32))
        start = -(-self._pos // align) * align
        del self._buf
        raw = np.memmap(self.path, dtype=np.uint8, mode="r")
        plain = {
            0: np.float32,
            1: np.float16,
            24: np.int8,
            25: np.int16,
            26: np.int32,
            27: np.int64,
            28: np.float64,
        }
        self.tensors: list[GGUFTensor] = []
        for name, shape, ggml_type, offset in infos:
            qtype = GGMLQuantizationType(ggml_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
            n_bytes = int(np.prod(shape)) * type_size // block
            chunk = np.asarray(raw[start + offset : start + offset + n_bytes])  # a plain ndarray view
            if ggml_type in plain:
                data = chunk.view(plain[ggml_type]).reshape(shape)
            else:
                data = chunk.reshape(quant_shape_to_byte_shape(shape, qtype))
            self.tensors.append(GGUFTensor(name, shape, ggml_type, data))

    def _u32(self) -> int:
        (v,) = struct.unpack_from("<I", self._buf, self._pos)
        self._pos += 4
        return v

    def _str(self) -> str:
        (n,) = struct.unpack_from("<Q", self._buf, self._pos)
        start = self._pos + 8
        self._pos = start + n
        if self._pos > len(self._buf):
            raise ValueError(f"{self.path}: the GGUF header is cut off or larger than 64 MB")
        return self._buf[start : self._pos].decode("utf-8")

    def _value(self, vtype: int) -> Any:
        if vtype == 8:
            return self._str()
        if vtype == 9:
            etype = self._u32()
            (count,) = struct.unpack_from("<Q", self._buf, self._pos)
            self._pos += 8
            if etype in _NUMPY:
                arr = np.frombuffer(self._buf, dtype=_NUMPY[etype], count=count, offset=self._pos)
                self._pos += arr.nbytes
                return arr.tolist()
            return [self._value(etype) for _ in range(count)]
        if vtype not in _SCALAR:
            raise ValueError(f"{self.path}: unknown GGUF value type {vtype} at byte {self._pos}")
        fmt = "<" + _SCALAR[vtype]
        (v,) = struct.unpack_from(fmt, self._buf, self._pos)
        self._pos += struct.calcsize(fmt)
        return v
