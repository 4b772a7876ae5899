"""The ROS 2 YAML launch format (launch_yaml + launch_ros frontends), parsed into a `LaunchDescription`.

Entities: `arg`, `let`, `node`, `executable`, `group` (`scoped`, `push-ros-namespace`),
`include`, `set_env`/`unset_env`, with `if`/`unless` on any of them. Parsing evaluates
substitutions and conditions and reads files, but starts nothing (see `execution`). Every
error names the file, the line and the fix. `include` is scoped, as in recent ROS 2: the
included file sees the includer's launch configurations, and what it declares stays inside.
A relative path (`include` file, `param from:`) is read relative to the launch file's folder.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.launch import packages
from tether.launch._yaml import YamlMap, YamlSeq, load_yaml
from tether.launch.description import (
    OUTPUT_MODES,
    Argument,
    LaunchDescription,
    Location,
    NodeSpec,
    ParamFile,
    ParamValues,
    ProcessDescription,
)
from tether.launch.errors import LaunchError, LaunchFileError, closest, did_you_mean
from tether.launch.substitutions import SubstitutionContext, SubstitutionError, substitute

__all__ = ["parse_cli_args", "parse_launch_file"]

_CONDITIONS = ("if", "unless")
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
    *_CONDITIONS,
)
_KEYS: dict[str, tuple[str, ...]] = {
    "arg": ("name", "default", "description", *_CONDITIONS),
    "let": ("name", "value", *_CONDITIONS),
    "node": ("pkg", "exec", "namespace", "param", "remap", "ros_args", *_PROCESS_KEYS),
    "executable": ("cmd", "shell", *_PROCESS_KEYS),
    "group": ("children", "scoped", "forwarding", *_CONDITIONS),
    "include": ("file", "arg", *_CONDITIONS),
    "push-ros-namespace": ("namespace",),
    "set_env": ("name", "value", *_CONDITIONS),
    "unset_env": ("name", *_CONDITIONS),
}
_REQUIRED = {
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
_ALIASES = {"push_ros_namespace": "push-ros-namespace", "set-env": "set_env", "unset-env": "unset_env"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE = re.compile(r"^/([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?$")


def parse_cli_args(items: Sequence[str]) -> dict[str, str]:
    """`["rate:=10", ...]` (ros2 launch's syntax) -> {"rate": "10"}."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch arguments take NAME:=VALUE, but got {item!r}; e.g. rate:=10")
        out[name] = value
    return out


@dataclass
class _Scope:
    """What an entity sees: launch configurations, the pushed namespace, environment additions."""

    file: Path
    variables: dict[str, str]
    namespace: str = "/"
    env: dict[str, str | None] = field(default_factory=dict)
    # The include that opened this file, for the "pass it in the include's arg list" fix.
    include_site: Location | None = None

    def child(self, *, forwarding: bool = True) -> _Scope:
        return _Scope(
            self.file,
            dict(self.variables) if forwarding else {},
            self.namespace,
            dict(self.env),
            self.include_site,
        )


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
    scope = _Scope(path, dict(given))
    parser.parse_file(path, scope)
    for name in given:
        if name not in parser.declared and name not in parser.used:
            known = parser.declared | parser.used
            raise LaunchError(
                f"launch argument {name!r} was given but {path} neither declares nor reads it"
                + did_you_mean(name, known).replace("; known:", "; declared:")
            )
    return LaunchDescription(
        file=path,
        arguments=tuple(parser.arguments),
        processes=tuple(parser.processes),
        launch_args=dict(scope.variables),
        included=tuple(parser.included),
    )


class _Parser:
    def __init__(self, environ: Mapping[str, str], prefixes: tuple[Path, ...]) -> None:
        self.environ = environ
        self.prefixes = prefixes
        self.processes: list[ProcessDescription] = []
        self.arguments: list[Argument] = []
        self.included: list[Path] = []
        self.declared: set[str] = set()
        self.used: set[str] = set()
        self.chain: list[Path] = []  # files being parsed, to catch include cycles

    # -- files and entities -------------------------------------------------------------------
    def parse_file(self, path: Path, scope: _Scope) -> None:
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

    def entities(self, seq: YamlSeq, scope: _Scope) -> None:
        for item, line in zip(seq, seq.item_lines):
            if not isinstance(item, YamlMap) or len(item) != 1:
                raise LaunchFileError(
                    "each launch entity is a one-key mapping such as `- node: {...}`", scope.file, line
                )
            ((kind, body),) = item.items()
            kind = _ALIASES.get(kind, kind)
            if kind not in _KEYS:
                raise LaunchFileError(
                    f"unknown entity {kind!r}" + did_you_mean(kind, [*_KEYS, *_ALIASES]), scope.file, line
                )
            getattr(self, "_" + kind.replace("-", "_"))(body, line, scope)

    def _check(self, kind: str, body: Any, line: int, scope: _Scope) -> YamlMap:
        if not isinstance(body, YamlMap):
            raise LaunchFileError(
                f"{kind} takes a mapping of keys, e.g. `- {kind}: {{name: ...}}`", scope.file, line
            )
        allowed = _KEYS[kind]
        for key in body:
            if key not in allowed:
                raise LaunchFileError(
                    f"unknown key {key!r} in {kind}" + did_you_mean(str(key), allowed),
                    scope.file,
                    body.line_of(key),
                )
        for key in _REQUIRED.get(kind, ()):
            if key not in body:
                raise LaunchFileError(
                    f"{kind} needs the key {key!r}; add `{key}: ...`", scope.file, body.line
                )
        return body

    # -- value helpers ------------------------------------------------------------------------
    def text(self, value: Any, scope: _Scope, line: int) -> str:
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

    def flag(self, body: YamlMap, key: str, scope: _Scope, default: bool) -> bool:
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
        scope: _Scope,
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

    def enabled(self, body: YamlMap, scope: _Scope) -> bool:
        """The entity's `if`/`unless` conditions (both may be given; both must allow it)."""
        return self.flag(body, "if", scope, True) and not self.flag(body, "unless", scope, False)

    def pairs(self, body: YamlMap, key: str, scope: _Scope, a: str, b: str) -> list[tuple[str, Any, int]]:
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

    # -- entities -----------------------------------------------------------------------------
    def _arg(self, body: Any, line: int, scope: _Scope) -> None:
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

    def _let(self, body: Any, line: int, scope: _Scope) -> None:
        body = self._check("let", body, line, scope)
        if self.enabled(body, scope):
            name = self.text(body["name"], scope, body.line_of("name"))
            scope.variables[name] = self.text(body["value"], scope, body.line_of("value"))

    def _set_env(self, body: Any, line: int, scope: _Scope) -> None:
        body = self._check("set_env", body, line, scope)
        if self.enabled(body, scope):
            scope.env[self.text(body["name"], scope, line)] = self.text(
                body["value"], scope, body.line_of("value")
            )

    def _unset_env(self, body: Any, line: int, scope: _Scope) -> None:
        body = self._check("unset_env", body, line, scope)
        if self.enabled(body, scope):
            scope.env[self.text(body["name"], scope, line)] = None

    def _push_ros_namespace(self, body: Any, line: int, scope: _Scope) -> None:
        if not isinstance(body, YamlMap):  # `- push-ros-namespace: robot1` short form
            body = YamlMap(namespace=body)
            body.line, body.key_lines = line, {}
        body = self._check("push-ros-namespace", body, line, scope)
        scope.namespace = self.namespace(
            scope.namespace, self.text(body["namespace"], scope, line), scope, line
        )

    def namespace(self, base: str, ns: str, scope: _Scope, line: int) -> str:
        ns = ns.strip()
        if not ns:
            return base
        joined = ns if ns.startswith("/") else f"{base.rstrip('/')}/{ns}"
        joined = "/" + "/".join(p for p in joined.split("/") if p)
        if not _NAMESPACE.match(joined):
            raise LaunchFileError(
                f"namespace {joined!r} is not a valid ROS 2 namespace; use tokens of letters, "
                "digits and _ that do not start with a digit, e.g. /robot1",
                scope.file,
                line,
            )
        return joined

    def _group(self, body: Any, line: int, scope: _Scope) -> None:
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

    def _include(self, body: Any, line: int, scope: _Scope) -> None:
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

    def file_path(self, text: str, scope: _Scope, line: int) -> Path:
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

    def _node(self, body: Any, line: int, scope: _Scope) -> None:
        body = self._check("node", body, line, scope)
        if not self.enabled(body, scope):
            return
        pkg = self.text(body["pkg"], scope, body.line_of("pkg"))
        exe = self.text(body["exec"], scope, body.line_of("exec"))
        name = self.text(body["name"], scope, body.line_of("name")) if "name" in body else None
        if name is not None and not _NAME.match(name):
            raise LaunchFileError(
                f"node name {name!r} is not a valid ROS 2 name; use letters, digits and _, "
                "not starting with a digit",
                scope.file,
                body.line_of("name"),
            )
        ns = scope.namespace
        if "namespace" in body:
            ns_line = body.line_of("namespace")
            ns = self.namespace(scope.namespace, self.text(body["namespace"], scope, ns_line), scope, ns_line)
        try:
            command, entry_point = packages.resolve_node(pkg, exe, self.prefixes)
        except LaunchError as exc:
            raise LaunchFileError(str(exc), scope.file, line) from None
        remaps = tuple(
            (src, self.text(dst, scope, ln))
            for src, dst, ln in self.pairs(body, "remap", scope, "from", "to")
        )
        ros_args = (
            tuple(shlex.split(self.text(body["ros_args"], scope, body.line_of("ros_args"))))
            if "ros_args" in body
            else ()
        )
        spec = NodeSpec(pkg, exe, name, ns, self.params(body, scope), remaps, ros_args, entry_point)
        self.add_process(body, line, scope, label=name or exe, command=command, node=spec, shell=False)

    def params(self, body: YamlMap, scope: _Scope) -> tuple[ParamFile | ParamValues, ...]:
        items = body.get("param")
        if items is None:
            return ()
        if not isinstance(items, YamlSeq):
            raise LaunchFileError(
                "param takes a list of {name: ..., value: ...} or {from: FILE} items",
                scope.file,
                body.line_of("param"),
            )
        sources: list[ParamFile | ParamValues] = []
        pending: dict[str, Any] = {}
        for item, line in zip(items, items.item_lines):
            if isinstance(item, YamlMap) and set(item) == {"from"}:
                if pending:
                    sources.append(ParamValues(pending))
                    pending = {}
                sources.append(ParamFile(self.file_path(self.text(item["from"], scope, line), scope, line)))
            else:
                self.param_item(item, line, scope, "", pending)
        if pending:
            sources.append(ParamValues(pending))
        return tuple(sources)

    def param_item(self, item: Any, line: int, scope: _Scope, prefix: str, out: dict[str, Any]) -> None:
        """`{name, value}` or nested `{name, param: [...]}` (dotted names), as launch_ros reads them."""
        if (
            not isinstance(item, YamlMap)
            or "name" not in item
            or len(set(item) & {"value", "param"}) != 1
            or len(item) != 2
        ):
            raise LaunchFileError(
                "each param item is {name: N, value: V}, {name: N, param: [...]} or {from: FILE}",
                scope.file,
                line,
            )
        name = prefix + self.text(item["name"], scope, line)
        if "param" in item:
            nested = item["param"]
            if not isinstance(nested, YamlSeq):
                raise LaunchFileError(f"param {name!r}: `param:` takes a list", scope.file, line)
            for sub, sub_line in zip(nested, nested.item_lines):
                self.param_item(sub, sub_line, scope, name + ".", out)
            return
        out[name] = self.typed(item["value"], scope, item.line_of("value"))

    def typed(self, value: Any, scope: _Scope, line: int) -> Any:
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

    def _executable(self, body: Any, line: int, scope: _Scope) -> None:
        body = self._check("executable", body, line, scope)
        if not self.enabled(body, scope):
            return
        shell = self.flag(body, "shell", scope, False)
        cmd = self.text(body["cmd"], scope, body.line_of("cmd"))
        if not cmd.strip():
            raise LaunchFileError(
                "executable cmd is empty; give the program and its arguments", scope.file, body.line_of("cmd")
            )
        command = (cmd,) if shell else tuple(shlex.split(cmd))
        label = (
            self.text(body["name"], scope, body.line_of("name"))
            if "name" in body
            else Path(shlex.split(cmd)[0]).name
        )
        self.add_process(body, line, scope, label=label, command=command, node=None, shell=shell)

    def add_process(
        self,
        body: YamlMap,
        line: int,
        scope: _Scope,
        *,
        label: str,
        command: tuple[str, ...],
        node: NodeSpec | None,
        shell: bool,
    ) -> None:
        output = self.text(body.get("output", "screen"), scope, body.line_of("output"))
        if output not in OUTPUT_MODES:
            hint = closest(output, OUTPUT_MODES)
            raise LaunchFileError(
                f"output must be one of {', '.join(OUTPUT_MODES)}, but got {output!r}"
                + (f"; did you mean {hint!r}?" if hint else ""),
                scope.file,
                body.line_of("output"),
            )
        if "args" in body:
            extra = shlex.split(self.text(body["args"], scope, body.line_of("args")))
            command = (f"{command[0]} {shlex.join(extra)}",) if shell else (*command, *extra)
        if "launch-prefix" in body:
            prefix = shlex.split(self.text(body["launch-prefix"], scope, body.line_of("launch-prefix")))
            command = (f"{shlex.join(prefix)} {command[0]}",) if shell else (*prefix, *command)
        env = dict(scope.env)
        for name, value, item_line in self.pairs(body, "env", scope, "name", "value"):
            env[name] = self.text(value, scope, item_line)
        cwd = None
        if "cwd" in body:
            cwd = Path(self.text(body["cwd"], scope, body.line_of("cwd"))).expanduser()
            if not cwd.is_dir():
                raise LaunchFileError(
                    f"cwd {str(cwd)!r} is not a folder; fix the path", scope.file, body.line_of("cwd")
                )
        self.processes.append(
            ProcessDescription(
                name=label,
                command=command,
                location=Location(scope.file, line),
                node=node,
                cwd=cwd,
                env=env,
                shell=shell,
                output=output,
                respawn=self.flag(body, "respawn", scope, False),
                respawn_delay=self.number(body, "respawn_delay", scope, 0.0),
                respawn_max_retries=int(
                    self.number(body, "respawn_max_retries", scope, -1, integer=True, low=-1)
                ),
                sigterm_timeout=self.number(body, "sigterm_timeout", scope, 5.0),
                sigkill_timeout=self.number(body, "sigkill_timeout", scope, 5.0),
                launch_args=dict(scope.variables),
            )
        )
