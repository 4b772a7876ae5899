"""The process entities of a launch file: `node` (launch_ros) and `executable` (launch), into `ProcessDescription`s."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tether.launch import packages
from tether.launch._reader import NAME, Reader, Scope
from tether.launch._yaml import YamlMap, YamlSeq
from tether.launch.description import (
    OUTPUT_MODES,
    Location,
    NodeSpec,
    ParamFile,
    ParamValues,
    ProcessDescription,
)
from tether.launch.errors import LaunchError, LaunchFileError, closest

__all__ = ["ProcessReader"]


class ProcessReader(Reader):
    """Reads `node` and `executable` entities; appends to `processes` in launch order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processes: list[ProcessDescription] = []

    def _node(self, body: Any, line: int, scope: Scope) -> None:
        body = self._check("node", body, line, scope)
        if not self.enabled(body, scope):
            return
        pkg = self.text(body["pkg"], scope, body.line_of("pkg"))
        exe = self.text(body["exec"], scope, body.line_of("exec"))
        name = self.text(body["name"], scope, body.line_of("name")) if "name" in body else None
        if name is not None and not NAME.match(name):
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
        # The output label: launch_ros's `exec_name` when given, else the node name, else the executable.
        label = (
            self.text(body["exec_name"], scope, body.line_of("exec_name")) if "exec_name" in body else None
        )
        self.add_process(
            body, line, scope, label=label or name or exe, command=command, node=spec, shell=False
        )

    def params(self, body: YamlMap, scope: Scope) -> tuple[ParamFile | ParamValues, ...]:
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

    def param_item(self, item: Any, line: int, scope: Scope, prefix: str, out: dict[str, Any]) -> None:
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

    def _executable(self, body: Any, line: int, scope: Scope) -> None:
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
        scope: Scope,
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
