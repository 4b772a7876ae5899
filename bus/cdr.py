"""Compiled CDR codecs: one generated Python encoder and decoder per ROS 2 message type.

The bytes are exactly rosbags' little-endian CDR (the ROS 2 wire format; tests compare every type
in the typestore), but each type compiles to one flat function: nested messages are inlined,
runs of fixed-size fields become one `struct` call with their padding, and arrays move as one
buffer copy. Against rosbags' per-message-class functions this halves the per-message Python
cost, which is what the bus pays twice for every message (publisher and subscriber).

Encoding writes every byte (padding and string terminators included), so a publisher may reuse
one buffer for all its messages. Decoding rejects what rosbags rejects: short data, strings
without a terminator or longer than the data, sequence counts that cannot fit, trailing bytes.
Types with fields this compiler does not handle (float128, wstring) fall back to rosbags.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

__all__ = ["CdrError", "Codec", "compile_codec"]

# Basic types: struct code, size (= alignment in CDR), numpy dtype for arrays.
_BASE: dict[str, tuple[str, int, str]] = {
    "bool": ("?", 1, "bool_"),
    "byte": ("b", 1, "int8"),
    "char": ("B", 1, "uint8"),
    "int8": ("b", 1, "int8"),
    "uint8": ("B", 1, "uint8"),
    "int16": ("h", 2, "int16"),
    "uint16": ("H", 2, "uint16"),
    "int32": ("i", 4, "int32"),
    "uint32": ("I", 4, "uint32"),
    "int64": ("q", 8, "int64"),
    "uint64": ("Q", 8, "uint64"),
    "float32": ("f", 4, "float32"),
    "float64": ("d", 8, "float64"),
}
_BASE_NODE, _NAME_NODE, _ARRAY_NODE, _SEQUENCE_NODE = 1, 2, 3, 4  # rosbags' Nodetype values
HEADER = b"\x00\x01\x00\x00"  # CDR little-endian encapsulation, options 0
_ZEROS = [bytes(n) for n in range(8)]


class CdrError(ValueError):
    """Bytes that do not decode as the type, or a message that does not encode (bad field value)."""


class Unsupported(Exception):
    """The type has a field this compiler leaves to rosbags."""


class _Gen:
    """Builds the source of one type's three functions: size, encode (write) and decode."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.consts: dict[str, Any] = {"np": np, "CdrError": CdrError, "ZEROS": _ZEROS}
        self.helpers: list[str] = []  # per-type element functions for sequences/arrays of messages
        self.done: set[str] = set()
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value: Any, prefix: str = "K") -> str:
        key = self.name(prefix)
        self.consts[key] = value
        return key

    # -- the walk: a message type becomes a list of operations on (value expression, field) -------

    def flatten(self, typename: str, expr: str, ops: list) -> None:
        """Operations for the fields of `typename`, whose value is `expr`; nested messages inline."""
        fields = self.store.get_msgdef(typename).fields
        for fname, desc in fields:
            fexpr = f"{expr}.{fname}"
            kind = desc[0]
            if kind == _NAME_NODE:
                self.flatten(desc[1], fexpr, ops)
            elif kind == _BASE_NODE:
                base = desc[1][0]
                if base == "string":
                    ops.append(("str", fexpr))
                elif base in _BASE:
                    ops.append(("prim", fexpr, base))
                else:
                    raise Unsupported(base)
            else:
                sub, length = desc[1]
                seq = kind == _SEQUENCE_NODE
                if sub[0] == _BASE_NODE and sub[1][0] in _BASE:
                    ops.append(("arr", fexpr, sub[1][0], None if seq else length))
                elif sub[0] == _BASE_NODE and sub[1][0] == "string":
                    ops.append(("strs", fexpr, None if seq else length))
                elif sub[0] == _NAME_NODE:
                    self.element(sub[1])
                    ops.append(("msgs", fexpr, sub[1], None if seq else length))
                else:
                    raise Unsupported(str(sub))

    def element(self, typename: str) -> None:
        """Functions for one element of a sequence/array of `typename` (alignment unknown at entry)."""
        key = _ident(typename)
        if key in self.done:
            return
        self.done.add(key)
        self.helpers += self.functions(typename, "_" + key, known=1)

    def functions(self, typename: str, suffix: str, known: int) -> list[str]:
        """Source of size`suffix`, encode`suffix` and decode`suffix` for `typename`, entered with
        `known` alignment (8 at the start of the data, 1 for an element of a sequence)."""
        ops: list = []
        self.flatten(typename, "m", ops)
        dec_lines, value = self.dec_body(typename, known)
        return [
            f"def size{suffix}(m, p):",
            *self.size_body(ops, known),
            "    return p",
            f"def encode{suffix}(mv, p, m):",
            *self.enc_body(ops, known),
            "    return p",
            f"def decode{suffix}(mv, p, end):",
            *dec_lines,
            f"    return {value}, p",
        ]

    # -- size ---------------------------------------------------------------------------------

    def size_body(self, ops: list, known: int) -> list[str]:
        """Lines advancing `p` over the encoded size (strings measured in UTF-8)."""
        lines: list[str] = []
        static = 0  # bytes since the last runtime position, with alignment `known` at that position
        for op in ops:
            kind = op[0]
            if kind == "prim":
                size = _BASE[op[2]][1]
                static, known, pre = _place(static, known, size)
                lines += pre
                static += size
                continue
            lines += _flush(static)
            known, static = _known_after(static, known), 0
            if kind == "str":
                lines += [*_align_rt(4, known), f"    p += 5 + len({op[1]}.encode())"]
                known = 1
            elif kind == "arr":
                base, fixed = op[2], op[3]
                size = _BASE[base][1]
                if fixed is None:
                    lines += [*_align_rt(4, known), "    p += 4"]
                    known = 4
                    pad = _align_rt(size, known)
                    lines += [f"    if len({op[1]}):", *("    " + ln for ln in pad)] if pad else []
                    lines.append(f"    p += len({op[1]}) * {size}")
                    known = 1
                else:
                    lines += [*_align_rt(size, known), f"    p += {fixed * size}"]
                    known = size
            elif kind == "strs":
                if op[2] is None:
                    lines += [*_align_rt(4, known), "    p += 4"]
                lines += [f"    for s in {op[1]}:", "        p = ((p + 3) & -4) + 5 + len(s.encode())"]
                known = 1
            else:  # msgs
                if op[3] is None:
                    lines += [*_align_rt(4, known), "    p += 4"]
                lines += [f"    for e in {op[1]}:", f"        p = size_{_ident(op[2])}(e, p)"]
                known = 1
        lines += _flush(static)
        return lines

    # -- encode -------------------------------------------------------------------------------

    def enc_body(self, ops: list, known: int) -> list[str]:
        lines: list[str] = []
        fmt, vals, static = "<", [], 0

        def flush() -> None:
            nonlocal fmt, vals, static, known
            if static:
                code = self.const(struct.Struct(fmt).pack_into, "pack")
                lines.append(f"    {code}(mv, p, {', '.join(vals)})")
                lines.append(f"    p += {static}")
            fmt, vals, static, known = "<", [], 0, _known_after(static, known)

        for op in ops:
            kind = op[0]
            if kind == "prim":
                code, size, _ = _BASE[op[2]]
                pad = (-static) % size if size <= known else None
                if pad is None:  # alignment unknown here: runtime padding, then a new run
                    flush()
                    lines += _pad_rt(size)
                    known = size
                    pad = 0
                fmt += "x" * pad + code
                vals.append(op[1])
                static += pad + size
                continue
            flush()
            if kind == "str":
                b = self.name("b")
                lines += [*_pad_rt_known(4, known), f"    {b} = {op[1]}.encode()", f"    n = len({b}) + 1"]
                lines += [
                    "    U32(mv, p, n)",
                    f"    mv[p + 4 : p + 3 + n] = {b}",
                    "    mv[p + 3 + n] = 0",
                    "    p += 4 + n",
                ]
                known = 1
            elif kind == "arr":
                base, fixed = op[2], op[3]
                code, size, dtype = _BASE[base]
                a = self.name("a")
                lines.append(f"    {a} = {op[1]}")
                dt = self.const(np.dtype(dtype), "dtype")  # native dtypes are singletons: `is` is exact
                lines.append(f"    if type({a}) is not np.ndarray or {a}.dtype is not {dt}:")
                lines.append(f"        {a} = np.asarray({a}, dtype={dt})")
                if fixed is None:
                    lines += [*_pad_rt_known(4, known), f"    U32(mv, p, len({a}))", "    p += 4"]
                    known = 4
                else:
                    lines.append(f"    if len({a}) != {fixed}:")
                    lines.append(
                        f"        raise CdrError('{op[1][2:]} must have {fixed} elements, got ' + str(len({a})))"
                    )
                lines.append(f"    if len({a}):")
                lines += ["    " + ln for ln in _pad_rt_known(size, known)]
                lines.append(f"        q = p + len({a}) * {size}")
                lines.append("        try:")
                lines.append(f"            mv[p:q] = {a}.data.cast('B')")
                lines.append("        except (TypeError, ValueError):  # not C-contiguous, or not 1-D")
                lines.append(f"            mv[p:q] = np.ascontiguousarray({a}).reshape(-1).data.cast('B')")
                lines.append("        p = q")
                known = 1
            elif kind == "strs":
                if op[2] is None:
                    lines += [*_pad_rt_known(4, known), f"    U32(mv, p, len({op[1]}))", "    p += 4"]
                else:
                    lines.append(f"    if len({op[1]}) != {op[2]}:")
                    lines.append(f"        raise CdrError('{op[1][2:]} must have {op[2]} strings')")
                lines += [f"    for s in {op[1]}:", *("    " + ln for ln in _pad_rt(4))]
                lines += ["        s = s.encode()", "        n = len(s) + 1", "        U32(mv, p, n)"]
                lines += [
                    "        mv[p + 4 : p + 3 + n] = s",
                    "        mv[p + 3 + n] = 0",
                    "        p += 4 + n",
                ]
                known = 1
            else:  # msgs
                if op[3] is None:
                    lines += [*_pad_rt_known(4, known), f"    U32(mv, p, len({op[1]}))", "    p += 4"]
                else:
                    lines.append(f"    if len({op[1]}) != {op[3]}:")
                    lines.append(f"        raise CdrError('{op[1][2:]} must have {op[3]} elements')")
                lines += [f"    for e in {op[1]}:", f"        p = encode_{_ident(op[2])}(mv, p, e)"]
                known = 1
        flush()
        return [ln for ln in lines if ln]

    # -- decode -------------------------------------------------------------------------------

    def dec_body(self, typename: str, known: int) -> tuple[list[str], str]:
        """Lines reading fields into locals, and the expression that builds the message from them."""
        lines: list[str] = []
        state = {"fmt": "<", "names": [], "static": 0, "known": known}

        def flush() -> None:
            if state["static"]:
                code = self.const(struct.Struct(state["fmt"]).unpack_from, "unpack")
                names = state["names"]
                target = ", ".join(names) + ("," if len(names) == 1 else "")
                lines.append(f"    {target} = {code}(mv, p)" if names else "")
                lines.append(f"    p += {state['static']}")
            state.update(fmt="<", names=[], static=0, known=_known_after(state["static"], state["known"]))

        def walk(tname: str) -> str:
            nonlocal lines
            msgdef = self.store.get_msgdef(tname)
            args = []
            for _fname, desc in msgdef.fields:
                kind = desc[0]
                if kind == _NAME_NODE:
                    args.append(walk(desc[1]))
                    continue
                if kind == _BASE_NODE and desc[1][0] in _BASE:
                    code, size, _ = _BASE[desc[1][0]]
                    pad = (-state["static"]) % size if size <= state["known"] else None
                    if pad is None:
                        flush()
                        lines.extend(_pad_rt(size, write=False))
                        state["known"] = size
                        pad = 0
                    v = self.name("v")
                    state["fmt"] += "x" * pad + code
                    state["names"].append(v)
                    state["static"] += pad + size
                    args.append(v)
                    continue
                flush()
                v = self.name("v")
                args.append(v)
                kn = state["known"]
                if kind == _BASE_NODE:  # string
                    lines.extend(_pad_rt_known(4, kn, write=False))
                    lines += _read_string(v)
                    state["known"] = 1
                    continue
                sub, length = desc[1]
                seq = kind == _SEQUENCE_NODE
                if seq:
                    lines.extend(_pad_rt_known(4, kn, write=False))
                    lines += ["    (n,) = U32R(mv, p)", "    p += 4"]
                    kn = 4
                else:
                    lines.append(f"    n = {length}")
                if sub[0] == _BASE_NODE and sub[1][0] in _BASE:
                    _, size, dtype = _BASE[sub[1][0]]
                    pad = _pad_rt_known(size, kn, write=False)
                    lines += ["    if n:", *("    " + ln for ln in pad)] if pad else []
                    lines.append(f"    if p + n * {size} > end:")
                    lines.append(
                        f"        raise CdrError(f'array of {{n}} {sub[1][0]} at offset {{p}} is past the end')"
                    )
                    lines.append(f"    {v} = np.frombuffer(mv, np.{dtype}, n, p)")
                    lines.append(f"    p += n * {size}")
                elif sub[0] == _BASE_NODE and sub[1][0] == "string":
                    lines.append("    if p + n * 5 > end:")
                    lines.append("        raise CdrError(f'{n} strings at offset {p} cannot fit')")
                    lines += [
                        f"    {v} = []",
                        "    for _ in range(n):",
                        *("    " + ln for ln in _pad_rt(4, write=False)),
                    ]
                    lines += ["    " + ln for ln in _read_string("s")]
                    lines.append(f"        {v}.append(s)")
                elif sub[0] == _NAME_NODE:
                    self.element(sub[1])
                    lines.append("    if p + n > end:")
                    lines.append("        raise CdrError(f'{n} messages at offset {p} cannot fit')")
                    lines += [f"    {v} = []", "    for _ in range(n):"]
                    lines += [f"        e, p = decode_{_ident(sub[1])}(mv, p, end)", f"        {v}.append(e)"]
                else:
                    raise Unsupported(str(sub))
                state["known"] = 1
            cls = self.const(msgdef.cls, "cls")
            return f"{cls}({', '.join(args)})"

        value = walk(typename)
        flush()
        return [ln for ln in lines if ln], value


def _ident(typename: str) -> str:
    return typename.replace("/", "__")


def _place(static: int, known: int, size: int) -> tuple[int, int, list[str]]:
    """Size pass: align a primitive statically when the alignment is known, else at run time."""
    if size <= known:
        return static + (-static) % size, known, []
    pre = [*_flush(static), *_align_rt(size, 1)]
    return 0, size, pre


def _known_after(static: int, known: int) -> int:
    """The alignment `p` keeps after advancing `static` bytes from a multiple of `known`."""
    while known > 1 and static % known:
        known //= 2
    return known


def _flush(static: int) -> list[str]:
    return [f"    p += {static}"] if static else []


def _round_up(size: int) -> str:
    """`p` (an offset in the whole buffer) rounded up so that `p - 4`, the offset from the data
    start, is a multiple of `size`; 4 is a multiple of sizes up to 4, so only 8 needs the shift."""
    return "((p + 3) & -8) + 4" if size == 8 else f"(p + {size - 1}) & -{size}"


def _align_rt(size: int, known: int) -> list[str]:
    """Runtime alignment of `p` to `size`, unless it is already known to hold."""
    if size <= known or size == 1:
        return []
    return [f"    p = {_round_up(size)}"]


def _pad_rt(size: int, write: bool = True) -> list[str]:
    """Runtime alignment that, when encoding, zeroes the padding it skips (buffers are reused)."""
    if size == 1:
        return []
    if not write:
        return [f"    p = {_round_up(size)}"]
    return [f"    q = {_round_up(size)}", "    mv[p:q] = ZEROS[q - p]", "    p = q"]


def _pad_rt_known(size: int, known: int, write: bool = True) -> list[str]:
    return [] if size <= known else _pad_rt(size, write)


def _read_string(v: str) -> list[str]:
    return [
        "    (n,) = U32R(mv, p)",
        "    q = p + 4 + n",
        "    if n < 1 or q > end or mv[q - 1] != 0:",
        "        raise CdrError(f'bad string of length {n} at offset {p}')",
        f"    {v} = str(mv[p + 4 : q - 1], 'utf-8')",
        "    p = q",
    ]


class Codec:
    """Encoder and decoder of one message type (see the module docstring)."""

    def __init__(self, typename: str, size, encode, decode, source: str = "") -> None:
        self.typename = typename
        self.source = source  # the generated Python, for debugging: print(codec.source)
        self._size, self._encode, self._decode = size, encode, decode

    def encode(self, msg: Any, buf: bytearray | None = None) -> bytearray:
        """CDR bytes of `msg` (encapsulation header included), written into `buf` when it has the
        right length (every byte is rewritten), else into a new bytearray; returns the one used."""
        try:
            size = self._size(msg, 4)
            if buf is None or len(buf) != size:
                buf = bytearray(size)
            buf[:4] = HEADER
            end = self._encode(memoryview(buf), 4, msg)
        except CdrError as exc:  # a fixed-size array of the wrong length
            raise CdrError(f"{self.typename}: {exc}") from None
        except (struct.error, AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise CdrError(f"{self.typename} does not encode: {type(exc).__name__}: {exc}") from exc
        if end != size:  # a field changed between measuring and writing (another thread)
            raise CdrError(f"{self.typename} changed while it was being encoded")
        return buf

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """The message in `data` (little-endian CDR); arrays are numpy views into `data`."""
        end = len(data)
        if end < 4 or data[0] != 0 or data[1] != 1:
            raise CdrError(f"payload is not little-endian CDR: header {bytes(data[:4])!r}")
        try:
            msg, pos = self._decode(data, 4, end)
        except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise CdrError(
                f"payload does not decode as {self.typename}: {type(exc).__name__}: {exc}"
            ) from exc
        if pos + 3 < end:  # up to 3 bytes of trailing alignment padding are allowed, as in rosbags
            raise CdrError(f"payload has {end - pos} bytes after a whole {self.typename}")
        return msg


def compile_codec(typename: str, store: Any) -> Codec | None:
    """A compiled codec for `typename`, or None when the type has fields left to rosbags."""
    gen = _Gen(store)
    try:
        top = gen.functions(typename, "", known=8)
    except Unsupported:
        return None
    gen.consts["U32"] = struct.Struct("<I").pack_into
    gen.consts["U32R"] = struct.Struct("<I").unpack_from
    source = "\n".join([*gen.helpers, *top]) + "\n"
    namespace = dict(gen.consts)
    exec(compile(source, f"<cdr {typename}>", "exec"), namespace)  # noqa: S102 - our own generated code
    return Codec(typename, namespace["size"], namespace["encode"], namespace["decode"], source)
