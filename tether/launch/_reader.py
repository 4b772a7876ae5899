"""Reading located YAML values of a launch file: text with substitutions, flags, numbers, pairs, names.

`Scope` is what an entity sees (launch configurations, pushed namespace, environment);
`Reader` turns raw YAML values into typed ones, raising `LaunchFileError` at file:line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.launch import packages
from tether.launch._yaml import YamlMap, YamlSeq
from tether.launch.description import Location
from tether.launch.errors import LaunchError, LaunchFileError, did_you_mean
from tether.launch.substitutions import SubstitutionContext, SubstitutionError, substitute

__all__ = ["ALIASES", "KEYS", "NAME", "Reader", "Scope"]

# The keys each entity takes (launch_yaml + launch_ros names), and those it cannot do without.

CONDITIONS = ("if", "unless")
_PROCESS_KEYS = (
    "cwd",
    "env",
    "output",
    "respawn",
    "respawn_delay",
    "respawn_max_retries",
    "sigterm_timeout",
    "sigkill_timeout",
    "launch-prefix",
    "args",
    "name",
    *CONDITIONS,
)
KEYS: dict[str, tuple[str, ...]] = {
    "arg": ("name", "default", "description", *CONDITIONS),
    "let": ("name", "value", *CONDITIONS),
    "node": ("pkg", "exec", "exec_name", "namespace", "param", "remap", "ros_args", *_PROCESS_KEYS),
    "executable": ("cmd", "shell", *_PROCESS_KEYS),
    "group": ("children", "scoped", "forwarding", *CONDITIONS),
    "include": ("file", "arg", *CONDITIONS),
    "push-ros-namespace": ("namespace",),
    "set_env": ("name", "value", *CONDITIONS),
    "unset_env": ("name", *CONDITIONS),
}
REQUIRED = {
    "arg": ("name",),
    "let": ("name", "value"),
    "node": ("pkg", "exec"),
    "executable": ("cmd",),
    "include": ("file",),
    "push-ros-namespace": ("namespace",),
    "set_env": ("name", "value"),
    "unset_env": ("name",),
}
# ROS 2 spells some entities both ways across releases (Humble's docs: push_ros_namespace).
ALIASES = {"push_ros_namespace": "push-ros-namespace", "set-env": "set_env", "unset-env": "unset_env"}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAMESPACE = re.compile(r"^/([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?$")


@dataclass
class Scope:
    """What an entity sees: launch configurations, the pushed namespace, environment additions."""

    file: Path
    variables: dict[str, str]
    namespace: str = "/"
    env: dict[str, str | None] = field(default_factory=dict)
    # The include that opened this file, for the "pass it in the include's arg list" fix.
    include_site: Location | None = None

    def child(self, *, forwarding: bool = True) -> Scope:
        return Scope(
            self.file,
            dict(self.variables) if forwarding else {},
            self.namespace,
            dict(self.env),
            self.include_site,
        )


class Reader:
    """Typed values from an entity's YAML, evaluated in a scope; records the launch configurations read."""

    def __init__(self, environ: Mapping[str, str], prefixes: tuple[Path, ...]) -> None:
        self.environ = environ
        self.prefixes = prefixes
        self.used: set[str] = set()

    def _check(self, kind: str, body: Any, line: int, scope: Scope) -> YamlMap:
        if not isinstance(body, YamlMap):
            raise LaunchFileError(
                f"{kind} takes a mapping of keys, e.g. `- {kind}: {{name: ...}}`", scope.file, line
            )
        allowed = KEYS[kind]
        for key in body:
            if key not in allowed:
                raise LaunchFileError(
                    f"unknown key {key!r} in {kind}" + did_you_mean(str(key), allowed),
                    scope.file,
                    body.line_of(key),
                )
        for key in REQUIRED.get(kind, ()):
            if key not in body:
                raise LaunchFileError(
                    f"{kind} needs the key {key!r}; add `{key}: ...`", scope.file, body.line
                )
        return body

    def text(self, value: Any, scope: Scope, line: int) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise LaunchFileError(
                f"expected a text value, but got a {type(value).__name__}: {value!r}", scope.file, line
            )
        ctx = SubstitutionContext(scope.variables, self.environ, self.find_pkg_share, scope.file)
        try:
            return substitute(str(value), ctx)
        except (SubstitutionError, LaunchError) as exc:
            raise LaunchFileError(str(exc), scope.file, line) from None
        finally:
            self.used |= ctx.used

    def find_pkg_share(self, pkg: str) -> Path:
        return packages.find_pkg_share(pkg, self.prefixes)

    def flag(self, body: YamlMap, key: str, scope: Scope, default: bool) -> bool:
        if key not in body:
            return default
        value = body[key]
        if isinstance(value, bool):
            return value
        text = self.text(value, scope, body.line_of(key)).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise LaunchFileError(
            f"{key} must be 'true' or 'false' (or 1/0), but got {text!r}", scope.file, body.line_of(key)
        )

    def number(
        self,
        body: YamlMap,
        key: str,
        scope: Scope,
        default: float,
        *,
        integer: bool = False,
        low: float = 0.0,
    ) -> float:
        if key not in body:
            return default
        text = self.text(body[key], scope, body.line_of(key))
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise LaunchFileError(
                f"{key} must be a number, but got {text!r}", scope.file, body.line_of(key)
            ) from None
        if value < low:
            raise LaunchFileError(
                f"{key} must be >= {low:g}, but got {value:g}", scope.file, body.line_of(key)
            )
        return value

    def enabled(self, body: YamlMap, scope: Scope) -> bool:
        """The entity's `if`/`unless` conditions (both may be given; both must allow it)."""
        return self.flag(body, "if", scope, True) and not self.flag(body, "unless", scope, False)

    def pairs(self, body: YamlMap, key: str, scope: Scope, a: str, b: str) -> list[tuple[str, Any, int]]:
        """A list of `{a: ..., b: ...}` items (remaps, env, include args) as (a-text, raw b, line)."""
        items = body.get(key)
        if items is None:
            return []
        if not isinstance(items, YamlSeq):
            raise LaunchFileError(
                f"{key} takes a list of {{{a}: ..., {b}: ...}} items", scope.file, body.line_of(key)
            )
        out = []
        for item, line in zip(items, items.item_lines):
            if not isinstance(item, YamlMap) or set(item) != {a, b}:
                got = sorted(item) if isinstance(item, YamlMap) else type(item).__name__
                raise LaunchFileError(
                    f"each {key} item needs exactly the keys {a!r} and {b!r}, but got {got}", scope.file, line
                )
            out.append((self.text(item[a], scope, line), item[b], line))
        return out

    def namespace(self, base: str, ns: str, scope: Scope, line: int) -> str:
        ns = ns.strip()
        if not ns:
            return base
        joined = ns if ns.startswith("/") else f"{base.rstrip('/')}/{ns}"
        joined = "/" + "/".join(p for p in joined.split("/") if p)
        if not NAMESPACE.match(joined):
            raise LaunchFileError(
                f"namespace {joined!r} is not a valid ROS 2 namespace; use tokens of letters, "
                "digits and _ that do not start with a digit, e.g. /robot1",
                scope.file,
                line,
            )
        return joined

    def file_path(self, text: str, scope: Scope, line: int) -> Path:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = scope.file.parent / path
        if not path.is_file():
            raise LaunchFileError(
                f"file {text!r} not found (looked at {path}); fix the path or use $(find-pkg-share PKG)/...",
                scope.file,
                line,
            )
        return path

    def typed(self, value: Any, scope: Scope, line: int) -> Any:
        """A parameter value: YAML types kept; text after substitution typed as ROS 2 guesses it."""
        if isinstance(value, YamlSeq):
            return [self.typed(v, scope, ln) for v, ln in zip(value, value.item_lines)]
        if isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, YamlMap):
            raise LaunchFileError(
                "a param value cannot be a mapping; nest names with {name: N, param: [...]}", scope.file, line
            )
        text = self.text(value, scope, line)
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(text.lower(), text)
