"""Load a YAML file into a pydantic model, with errors that name the file and the line.

Scenarios, worlds and hardware profiles are YAML files a person edits; a mistake must point at
the line to fix, not only at a field path. `load_model` keeps the line of every mapping key and
sequence item while parsing, and maps each pydantic error's location onto it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigFileError", "load_model", "parse_yaml", "validate_data"]

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A configuration file breaks a rule; the message names the file, the line and the fix. Not recoverable
    by retrying: edit the file."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {message}")


def _record_lines(node: yaml.Node, loc: tuple, lines: dict[tuple, int]) -> None:
    """Record the 1-based line of every location (a tuple of keys and indices) under `node`."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (
                yaml.SafeLoader("").construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            _record_lines(value_node, (*loc, key), lines)
            # A field's own line (its key) is where a reader looks, also for a nested value.
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines)


def parse_yaml(path: Path | str) -> tuple[Any, dict[tuple, int]]:
    """(data, lines): the file's content and the line of each location (a tuple of keys and indices)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(path, None, f"cannot read the file ({exc.strerror})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigFileError(path, line, f"not valid YAML: {exc.problem}") from None
    if node is None:
        raise ConfigFileError(path, 1, "the file is empty; it must hold a mapping of fields")
    lines: dict[tuple, int] = {}
    _record_lines(node, (), lines)
    return yaml.safe_load(text), lines


def _locate(loc: tuple, lines: dict[tuple, int]) -> tuple[int | None, str]:
    """(line, dotted field) of a pydantic error location in the file.

    Parts the file does not have are skipped (pydantic adds the tag of a discriminated union), except
    the last one: a missing field, reported at its parent's line.
    """
    found: tuple = ()
    for part in loc:
        if (*found, part) in lines:
            found = (*found, part)
    shown = found if not loc or loc[-1] == (found[-1] if found else None) else (*found, loc[-1])
    return lines.get(found), ".".join(str(p) for p in shown) or "(top level)"


def validate_data(
    model: type[M], data: Any, lines: dict[tuple, int], path: Path | str, context: dict | None = None
) -> M:
    """Validate parsed data against `model`; the first error raised names the file, line and rule."""
    if not isinstance(data, dict):
        raise ConfigFileError(
            path, 1, f"the file must hold a mapping of fields, but holds a {type(data).__name__}"
        )
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        err = exc.errors()[0]
        line, field = _locate(tuple(err["loc"]), lines)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigFileError(path, line, f"{field}: {err['msg']}{more}") from None


def load_model(model: type[M], path: Path | str, *, context: dict | None = None) -> M:
    """Parse and validate a YAML file against `model`; errors name the file, line and rule."""
    data, lines = parse_yaml(path)
    return validate_data(model, data, lines, path, context)
