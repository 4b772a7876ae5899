"""The launcher's exceptions: every one states the rule, the value and the fix, with file:line for launch files."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LaunchError", "LaunchFileError", "closest", "did_you_mean"]


class LaunchError(Exception):
    """A launch cannot be described or run; not recoverable without changing the input."""


class LaunchFileError(LaunchError):
    """A launch file breaks a rule of the ROS 2 YAML launch format, at `file:line`."""

    def __init__(self, message: str, file: Path | str | None = None, line: int | None = None) -> None:
        self.file = Path(file) if file is not None else None
        self.line = line
        self.reason = message
        where = ""
        if self.file is not None:
            where = f" at {_display(self.file)}" + (f":{line}" if line else "")
        # The location goes right after the first clause, so the fix reads last:
        # "unknown key 'nmae' in node at x.launch.yaml:12; did you mean 'name'?"
        head, sep, tail = message.partition("; ")
        super().__init__(f"{head}{where}{sep}{tail}")


def _display(path: Path) -> str:
    """A path relative to the working directory when it is below it (as users typed it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt `word`, or None when none is close."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'name'?" for the closest choice, or "; known: a, b, c" when none is close."""
    options = sorted(set(choices))
    close = closest(word, options)
    if close:
        return f"; did you mean {close!r}?"
    return f"; known: {', '.join(options)}" if options else ""
