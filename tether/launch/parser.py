"""The ROS 2 YAML launch format (launch_yaml + launch_ros frontends), parsed into a `LaunchDescription`.

Entities: `arg`, `let`, `node`, `executable`, `group` (`scoped`, `push-ros-namespace`),
`include`, `set_env`/`unset_env`, with `if`/`unless` on any of them. Parsing evaluates
substitutions and conditions and reads files, but starts nothing (see `execution`). Every
error names the file, the line and the fix. `include` is scoped, as in recent ROS 2: the
included file sees the includer's launch configurations, and what it declares stays inside.
A relative path (`include` file, `param from:`) is read relative to the launch file's folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tether.launch._processes import ProcessReader
from tether.launch._reader import ALIASES, KEYS, Scope
from tether.launch._yaml import YamlMap, YamlSeq, load_yaml
from tether.launch.description import Argument, LaunchDescription, Location
from tether.launch.errors import LaunchError, LaunchFileError, did_you_mean

__all__ = ["parse_cli_args", "parse_launch_file"]


def parse_cli_args(items: Sequence[str]) -> dict[str, str]:
    """`["rate:=10", ...]` (ros2 launch's syntax) -> {"rate": "10"}."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch arguments take NAME:=VALUE, but got {item!r}; e.g. rate:=10")
        out[name] = value
    return out


def parse_launch_file(
    path: str | Path,
    args: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    ament_prefix_path: Sequence[Path] | None = None,
) -> LaunchDescription:
    """Parse `path` with launch arguments `args` (as `name:=value` on the command line) into a description."""
    from tether.settings import process_environ, settings

    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"launch file {path} not found; give the path to a *.launch.yaml file")
    parser = _Parser(
        environ=process_environ() if environ is None else environ,
        prefixes=tuple(settings().ament_prefix_path if ament_prefix_path is None else ament_prefix_path),
    )
    given = dict(args or {})
    scope = Scope(path, dict(given))
    parser.parse_file(path, scope)
    # ros2 launch accepts arguments no file declares; so do we (launch hooks read some, e.g.
    # hardware_profile), but a likely typo is said out loud.
    warnings = []
    for name in given:
        if name not in parser.declared and name not in parser.used:
            known = parser.declared | parser.used
            warnings.append(
                f"launch argument {name!r} is neither declared nor read by {path} (only launch hooks see it)"
                + did_you_mean(name, known).replace("; known:", "; declared:")
            )
    return LaunchDescription(
        file=path,
        arguments=tuple(parser.arguments),
        processes=tuple(parser.processes),
        launch_args=dict(scope.variables),
        included=tuple(parser.included),
        warnings=tuple(warnings),
    )


class _Parser(ProcessReader):
    """Walks the entity tree of a launch file and its includes, in order."""

    def __init__(self, environ: Mapping[str, str], prefixes: tuple[Path, ...]) -> None:
        super().__init__(environ, prefixes)
        self.arguments: list[Argument] = []
        self.included: list[Path] = []
        self.declared: set[str] = set()
        self.chain: list[Path] = []  # files being parsed, to catch include cycles

    # -- files and entities -------------------------------------------------------------------
    def parse_file(self, path: Path, scope: Scope) -> None:
        resolved = path.resolve()
        if resolved in self.chain:
            cycle = " -> ".join(str(p) for p in [*self.chain, resolved])
            raise LaunchFileError(f"include cycle {cycle}; remove one of the includes", path)
        doc = load_yaml(path)
        if not isinstance(doc, YamlMap) or "launch" not in doc:
            raise LaunchFileError(
                "a launch file's root must be `launch:` holding a list of entities; write `launch:` then "
                "`- node: {pkg: ..., exec: ...}`",
                path,
                getattr(doc, "line", 1),
            )
        extra = [k for k in doc if k != "launch"]
        if extra:
            raise LaunchFileError(
                f"unknown top-level key {extra[0]!r}; only `launch:` is allowed", path, doc.line_of(extra[0])
            )
        body = doc["launch"]
        if body is None:
            return
        if not isinstance(body, YamlSeq):
            raise LaunchFileError(
                "`launch:` must hold a list (`- node: ...` items)", path, doc.line_of("launch")
            )
        self.chain.append(resolved)
        try:
            self.entities(body, scope)
        finally:
            self.chain.pop()

    def entities(self, seq: YamlSeq, scope: Scope) -> None:
        for item, line in zip(seq, seq.item_lines):
            if not isinstance(item, YamlMap) or len(item) != 1:
                raise LaunchFileError(
                    "each launch entity is a one-key mapping such as `- node: {...}`", scope.file, line
                )
            ((kind, body),) = item.items()
            kind = ALIASES.get(kind, kind)
            if kind not in KEYS:
                raise LaunchFileError(
                    f"unknown entity {kind!r}" + did_you_mean(kind, [*KEYS, *ALIASES]), scope.file, line
                )
            getattr(self, "_" + kind.replace("-", "_"))(body, line, scope)

    # -- entities -----------------------------------------------------------------------------
    def _arg(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("arg", body, line, scope)
        if not self.enabled(body, scope):
            return
        name = self.text(body["name"], scope, body.line_of("name"))
        self.declared.add(name)
        default = self.text(body["default"], scope, body.line_of("default")) if "default" in body else None
        if name in scope.variables:  # given on the command line, by an include, or earlier: kept
            value = scope.variables[name]
        elif default is not None:
            value = default
        elif scope.include_site is not None:
            raise LaunchFileError(
                f"argument {name!r} has no default and was not given; pass it in the include's "
                f"arg list at {scope.include_site}: {{name: {name}, value: VALUE}}",
                scope.file,
                line,
            )
        else:
            raise LaunchFileError(
                f"argument {name!r} has no default and was not given; pass {name}:=VALUE", scope.file, line
            )
        scope.variables[name] = value
        desc = self.text(body.get("description"), scope, body.line_of("description"))
        self.arguments.append(Argument(name, value, default, desc, Location(scope.file, line)))

    def _let(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("let", body, line, scope)
        if self.enabled(body, scope):
            name = self.text(body["name"], scope, body.line_of("name"))
            scope.variables[name] = self.text(body["value"], scope, body.line_of("value"))

    def _set_env(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("set_env", body, line, scope)
        if self.enabled(body, scope):
            scope.env[self.text(body["name"], scope, line)] = self.text(
                body["value"], scope, body.line_of("value")
            )

    def _unset_env(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("unset_env", body, line, scope)
        if self.enabled(body, scope):
            scope.env[self.text(body["name"], scope, line)] = None

    def _push_ros_namespace(self, body: Any, line: int, scope: Scope) -> None:
        if not isinstance(body, YamlMap):  # `- push-ros-namespace: robot1` short form
            body = YamlMap(namespace=body)
            body.line, body.key_lines = line, {}
        body = self._check("push-ros-namespace", body, line, scope)
        scope.namespace = self.namespace(
            scope.namespace, self.text(body["namespace"], scope, line), scope, line
        )

    def _group(self, body: Any, line: int, scope: Scope) -> None:
        if isinstance(body, YamlSeq):  # `- group: [children...]`
            children, scoped, forwarding = body, True, True
        else:
            body = self._check("group", body, line, scope)
            if not self.enabled(body, scope):
                return
            children = body.get("children")
            if not isinstance(children, YamlSeq):
                raise LaunchFileError(
                    "group needs `children:` with a list of entities (or give the list directly)",
                    scope.file,
                    body.line,
                )
            scoped = self.flag(body, "scoped", scope, True)
            forwarding = self.flag(body, "forwarding", scope, True)
        self.entities(children, scope.child(forwarding=forwarding) if scoped else scope)

    def _include(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("include", body, line, scope)
        if not self.enabled(body, scope):
            return
        path = self.file_path(
            self.text(body["file"], scope, body.line_of("file")), scope, body.line_of("file")
        )
        child = scope.child()
        for name, value, item_line in self.pairs(body, "arg", scope, "name", "value"):
            child.variables[name] = self.text(value, scope, item_line)
        child.file, child.include_site = path, Location(scope.file, line)
        self.included.append(path)
        self.parse_file(path, child)
