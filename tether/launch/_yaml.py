"""A YAML loader that keeps line numbers, so every launch file error can name its line.

Mappings load as `YamlMap` (a dict with the line of the mapping and of each key), sequences
as `YamlSeq` (a list with the line of each item); scalars load as plain Python values.
Duplicate keys are an error (PyYAML would silently keep the last one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tether.launch.errors import LaunchFileError

__all__ = ["YamlMap", "YamlSeq", "load_yaml"]


class YamlMap(dict):
    """A mapping with `line` (its first line) and `key_lines[key]` (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YamlSeq(list):
    """A sequence with `line` and `item_lines[i]` (1-based)."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader with line-keeping containers; `file` is set per load for error messages."""

    file: Path = Path("<string>")


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = YamlMap()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)  # YAML merge keys (<<)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in data.key_lines:
            raise LaunchFileError(
                f"duplicate key {key!r} (first on line {data.key_lines[key]}); keep one", loader.file, line
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):
    data = YamlSeq()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(path: Path) -> Any:
    """Load one YAML document with line numbers; LaunchFileError with file:line when it is not valid YAML."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LaunchFileError(f"cannot read the launch file ({exc.strerror}); check the path", path) from None
    loader = _Loader(text)
    loader.file = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise LaunchFileError(
            f"not valid YAML: {exc.problem or exc.context}; fix the syntax", path, line
        ) from None
    except yaml.YAMLError as exc:
        raise LaunchFileError(f"not valid YAML: {exc}; fix the syntax", path) from None
    finally:
        loader.dispose()
