"""ConfigBot as a node on the bus (`configbot_ros.configbot`): launched beside the robot's nodes.

Parameters: `spec` (the specification file; required), `mode` (tune, static, observe),
`static_config` (static mode: inline JSON or a JSON/YAML file), `duration` (s, 0 = until
stopped), `library`, `sampler` (gp, tpe, random), `cgroups`, `run_dir`, `store_dir`, `stack` (overrides the
spec's cgroup stack). It publishes its status as JSON on `~/status` once a
second (the live views read it), its state as telemetry (`configbot.*`), and at the end prints
its report and writes `report.json` and `timeline.png` in its run folder. The same node runs on
rclpy (TETHER_TRANSPORT=rclpy) through the ament package `configbot_ros`.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tether.bus import Node, get_type, run_node
from tether.edge.configbot.bot import BotOptions, ConfigBot, Mode
from tether.edge.configbot.spec import SpecError, load_spec
from tether.edge.configbot.view import format_report

__all__ = ["ConfigBotNode", "load_config", "main"]

String = get_type("std_msgs/msg/String")
_STATES = {"waiting": 0, "tuning": 1, "verifying": 2, "monitoring": 3, "stopped": 4, "error": 5}


class ConfigBotNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("configbot", **kwargs)
        p = self.declare_parameter
        spec_path = str(p("spec", "", description="the specification file (YAML)").value)
        mode = str(
            p(
                "mode", "tune", description="tune, static or observe", choices=["tune", "static", "observe"]
            ).value
        )
        static = str(p("static_config", "", description="static mode: the configuration as JSON").value)
        duration = float(
            p("duration", 0.0, description="seconds to run, 0 = until stopped", min=0.0, max=1e7).value
        )
        library = bool(p("library", True, description="reuse the context library").value)
        sampler = str(p("sampler", "gp", description="Optuna sampler", choices=["gp", "tpe", "random"]).value)
        cgroups = bool(p("cgroups", True, description="place the nodes in cgroups").value)
        run_dir = str(p("run_dir", "", description="folder for timeline, report and plot").value)
        stack = str(p("stack", "", description="cgroup stack tether/<stack> (empty: the spec's)").value)
        store = str(
            p("store_dir", "", description="studies.db and library.db; empty = artefacts/configbot").value
        )
        if not spec_path:
            raise SpecError(
                Path("<parameter spec>"),
                None,
                "set the parameter spec:=<file.yaml> (a ConfigBot specification)",
            )
        self.spec = load_spec(spec_path)
        if stack:
            self.spec = self.spec.model_copy(update={"stack": stack})
        opts = BotOptions(
            mode=Mode(mode),
            static_config=load_config(static),
            library=library,
            sampler=sampler,
            cgroups=cgroups,
            run_dir=Path(run_dir) if run_dir else None,
            store_dir=Path(store) if store else None,
        )
        self.bot = ConfigBot(self.spec, self, opts)
        self.status_pub = self.create_publisher(String, "~/status", 10)
        self.telemetry.add_source(self._metrics)
        self.create_timer(1.0, self._publish_status)
        self.report: dict | None = None
        self._thread = threading.Thread(
            target=self._run, args=(duration or None,), name="configbot", daemon=True
        )
        self._thread.start()

    def _run(self, duration: float | None) -> None:
        try:
            self.report = self.bot.run(duration)
            print(format_report(self.report), flush=True)
        finally:
            self._publish_status()
            self.executor.shutdown()  # the run is over: the node exits

    def _metrics(self) -> dict[str, float]:
        st = self.bot.status()
        out = {
            "configbot.state": float(_STATES.get(st["state"], -1)),
            "configbot.trials": float(st["trials_total"]),
        }
        if st["violation_fraction"] is not None:
            out["configbot.violation_fraction"] = st["violation_fraction"]
        oks = [c["ok"] for c in st["constraints"] if c["core"] and c["ok"] is not None]
        if oks:
            out["configbot.core_ok"] = float(all(oks))
        return out

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self.bot.status(), default=str)))

    def close(self) -> None:
        """Called by run_node on SIGINT/SIGTERM: stop the loop, which restores and removes what it changed."""
        self.bot.stop()
        self._thread.join(timeout=15)


def load_config(text: str) -> dict:
    """A configuration given inline (JSON) or as a JSON or YAML file; {} for an empty string."""
    import yaml

    if not text.strip():
        return {}
    if text.strip().endswith((".json", ".yaml", ".yml")):
        text = Path(text.strip()).read_text()
    value = yaml.safe_load(text)  # JSON is YAML
    if not isinstance(value, dict):
        raise ValueError(f"a configuration is a mapping of knob -> value, but got {value!r}")
    return value


def main(args: Sequence[str] | None = None) -> None:
    sys.exit(run_node(ConfigBotNode, args))
