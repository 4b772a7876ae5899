"""Launch substitutions: `$(var x)`, `$(env X [default])`, `$(optenv X [default])`, `$(find-pkg-share pkg)`,
`$(dirname)`, `$(filename)` and `$(eval expr)`, nested as ros2 launch allows (`$(var $(env WHICH))`).

Grammar (ros2 launch's frontend): `$(name arg ...)`; arguments are separated by spaces, an
argument in single quotes may hold spaces, and any argument may hold further substitutions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tether.launch.errors import closest, did_you_mean

__all__ = ["SubstitutionContext", "SubstitutionError", "has_substitution", "substitute"]


class SubstitutionError(ValueError):
    """A substitution is malformed or cannot be resolved; the parser adds the file and line."""


@dataclass
class SubstitutionContext:
    """What substitutions read: launch configurations, the environment, package folders, the file."""

    variables: Mapping[str, str]
    environ: Mapping[str, str]
    find_pkg_share: Callable[[str], Path]
    file: Path
    # Names `$(var)` read, so the parser can tell a command-line argument nobody uses from a typo.
    used: set[str] = field(default_factory=set)


# A parsed text: literal strings and (name, [argument texts]) substitutions, in order.
_Part = str | tuple[str, list[list]]


def has_substitution(text: str) -> bool:
    return "$(" in text


def substitute(text: str, ctx: SubstitutionContext) -> str:
    """Evaluate every substitution in `text`."""
    parts, end = _parse(text, 0, closing=None)
    if end != len(text):  # pragma: no cover - _parse consumes everything at top level
        raise SubstitutionError(f"unexpected text after position {end} in {text!r}")
    return _evaluate(parts, ctx)


def _parse(text: str, i: int, closing: str | None) -> tuple[list[_Part], int]:
    """Parse from `i` up to `closing` (None: end of text; ' ': end of a bare argument; "'": quote)."""
    parts: list[_Part] = []
    buf: list[str] = []
    while i < len(text):
        c = text[i]
        if closing == " " and (c.isspace() or c == ")"):
            break
        if closing == "'" and c == "'":
            break
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "$\\'":
            buf.append(text[i + 1])  # `\$(` is a literal `$(`
            i += 2
            continue
        if text.startswith("$(", i):
            if buf:
                parts.append("".join(buf))
                buf = []
            sub, i = _parse_substitution(text, i)
            parts.append(sub)
            continue
        buf.append(c)
        i += 1
    if closing == "'" and i >= len(text):
        raise SubstitutionError(f"a quoted argument is not closed with ' in {text!r}")
    if buf:
        parts.append("".join(buf))
    return parts, i


def _parse_substitution(text: str, start: int) -> tuple[tuple[str, list[list]], int]:
    i = start + 2
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] in "-_"):
        j += 1
    name = text[i:j]
    if not name:
        raise SubstitutionError(f"'$(' must be followed by a substitution name, e.g. $(var x), in {text!r}")
    args: list[list] = []
    i = j
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            raise SubstitutionError(f"$({name} ...) is not closed with ')' in {text!r}")
        if text[i] == ")":
            return (name, args), i + 1
        if text[i] == "'":
            arg, i = _parse(text, i + 1, closing="'")
            i += 1  # the closing quote
        else:
            arg, i = _parse(text, i, closing=" ")
        args.append(arg)


def _evaluate(parts: list[_Part], ctx: SubstitutionContext) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            name, raw_args = part
            args = [_evaluate(a, ctx) for a in raw_args]
            out.append(_apply(name, args, ctx))
    return "".join(out)


def _arity(name: str, args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise SubstitutionError(f"$({name}) takes {usage}, but got {len(args)} argument(s) {args}")


def _apply(name: str, args: list[str], ctx: SubstitutionContext) -> str:
    if name == "var":
        _arity(name, args, 1, 1, "one name: $(var NAME)")
        key = args[0]
        ctx.used.add(key)
        if key not in ctx.variables:
            close = closest(key, ctx.variables)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise SubstitutionError(
                f"launch configuration {key!r} is not set{hint}; declare it with "
                f"`- arg: {{name: {key}, default: ...}}` or pass {key}:=VALUE"
            )
        return ctx.variables[key]
    if name in ("env", "optenv"):
        _arity(name, args, 1, 2, f"$({name} NAME [DEFAULT])")
        if args[0] in ctx.environ:
            return ctx.environ[args[0]]
        if len(args) == 2:
            return args[1]
        if name == "optenv":
            return ""
        raise SubstitutionError(
            f"environment variable {args[0]!r} is not set; set it, or give a default: $(env {args[0]} DEFAULT)"
        )
    if name == "find-pkg-share":
        _arity(name, args, 1, 1, "one package: $(find-pkg-share PKG)")
        return str(ctx.find_pkg_share(args[0]))
    if name == "dirname":
        _arity(name, args, 0, 0, "no arguments")
        return str(ctx.file.parent)
    if name == "filename":
        _arity(name, args, 0, 0, "no arguments")
        return ctx.file.name
    if name == "eval":
        _arity(name, args, 1, 1, "one quoted Python expression: $(eval '$(var a) * 2')")
        return _eval(args[0])
    raise SubstitutionError(f"unknown substitution $({name} ...)" + did_you_mean(name, _KNOWN))


_KNOWN = ("var", "env", "optenv", "find-pkg-share", "dirname", "filename", "eval")


def _eval(expr: str) -> str:
    """ros2 launch's `$(eval)`: a Python expression over `math`, result as text (no builtins beyond a few)."""
    names = {k: getattr(math, k) for k in dir(math) if not k.startswith("_")}
    names.update(
        {
            "min": min,
            "max": max,
            "abs": abs,
            "round": round,
            "int": int,
            "float": float,
            "str": str,
            "len": len,
            "True": True,
            "False": False,
        }
    )
    try:
        value = eval(expr, {"__builtins__": {}}, names)  # noqa: S307 - launch files are trusted, as in ROS 2
    except Exception as exc:
        raise SubstitutionError(f"$(eval {expr!r}) failed: {type(exc).__name__}: {exc}") from None
    return str(value)
