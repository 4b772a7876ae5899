"""ConfigBot's performance specification: constraints, an objective, essential nodes and knobs, from YAML.

The specification is ConfigBot's (arXiv 2501.10513) constrained multi-objective problem: core
constraints (a topic's rate at or above a threshold, and here any telemetry metric on the bus
below or above one), an objective (the paper's: maximise the minimum over non-core topics of
rate / weight; or maximise / minimise any signal), the essential nodes with their CPU floors,
and the knobs ConfigBot may turn with their bounds. Errors name the file and the line.

Signals (what a constraint, an objective or a context names):
    rate: /cmd_vel                         topic rate, Hz, from inter-arrival times on the bus
    latency: /scan                         p95 ms, receive time minus header.stamp (stamped messages)
    metric: navigation:latency.callback.p95_ms   a node's telemetry metric (tether.bus.telemetry)
    metric: navigation:cpu.cores           a node's CPU (cgroup accounting, else psutil), cores
    metric: stack:cpu.cores                all the specification's nodes together, cores
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.edge.yamlconfig import ConfigFileError, parse_yaml, validate_data

__all__ = [
    "Constraint",
    "ContextSpec",
    "Knob",
    "NodeSpec",
    "Objective",
    "Signal",
    "Spec",
    "SpecError",
    "SPECS_DIR",
    "load_spec",
    "parse_signal",
    "spec_path",
]

STACK = "stack"  # the reserved node name of the aggregate signals (stack:cpu.cores)
_TOPIC = re.compile(r"^/[A-Za-z0-9_/~{}]*[A-Za-z0-9_}]$")
_NODE = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_/]*$")


class SpecError(ConfigFileError):
    """A specification file breaks a rule; names the file and the line. Not recoverable: fix the file."""


@dataclass(frozen=True)
class Signal:
    """One measurable quantity on the bus. `node` is a fully qualified node name (or "stack")."""

    kind: Literal["rate", "latency", "metric"]
    name: str  # topic for rate/latency; metric name for metric
    node: str | None = None

    @property
    def key(self) -> str:
        return f"{self.node}:{self.name}" if self.kind == "metric" else f"{self.kind}({self.name})"

    @property
    def unit(self) -> str:
        if self.kind == "rate":
            return "Hz"
        if self.kind == "latency" or self.name.endswith("_ms"):
            return "ms"
        if self.name == "cpu.cores":
            return "cores"
        return ""

    def __str__(self) -> str:
        return self.key


def qualify(node: str, namespace: str = "/") -> str:
    """A node name as a fully qualified name: `navigation` under `/robot` is `/robot/navigation`."""
    if node.startswith("/"):
        return node.rstrip("/") or "/"
    return f"{namespace.rstrip('/')}/{node}"


def parse_signal(kind: str, text: str, namespace: str = "/") -> Signal:
    """`rate`/`latency` + a topic, or `metric` + `<node>:<metric>`; ValueError stating the form."""
    text = str(text).strip()
    if kind in ("rate", "latency"):
        topic = text if text.startswith("/") else "/" + text
        if not _TOPIC.match(topic):
            raise ValueError(f"{kind} needs a topic name like /cmd_vel, but got {text!r}")
        return Signal(kind, topic)  # type: ignore[arg-type]
    node, sep, metric = text.rpartition(":")
    if not sep or not node or not metric:
        raise ValueError(
            f"a metric is written <node>:<metric>, e.g. navigation:latency.callback.p95_ms or "
            f"stack:cpu.cores, but got {text!r}"
        )
    if node == STACK:
        if metric != "cpu.cores":
            raise ValueError(f"the stack offers only stack:cpu.cores, but got {text!r}")
        return Signal("metric", metric, STACK)
    if not _NODE.match(node):
        raise ValueError(f"{node!r} is not a node name (letters, digits, _ and / for a namespace)")
    return Signal("metric", metric, qualify(node, namespace))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SignalRef(_Strict):
    """Exactly one of rate / latency / metric."""

    rate: str | None = None
    latency: str | None = None
    metric: str | None = None

    @model_validator(mode="after")
    def _one(self) -> _SignalRef:
        given = [k for k in ("rate", "latency", "metric") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of rate: /topic, latency: /topic or metric: <node>:<metric>, but got {given or 'none'}"
            )
        parse_signal(given[0], getattr(self, given[0]))  # syntax check; namespace applied later
        return self

    def signal(self, namespace: str) -> Signal:
        kind = next(k for k in ("rate", "latency", "metric") if getattr(self, k) is not None)
        return parse_signal(kind, getattr(self, kind), namespace)


class Constraint(_SignalRef):
    """`min` <= signal <= `max` (one or both). A core constraint's break triggers retuning and rollback."""

    min: float | None = None
    max: float | None = None
    core: bool = True
    name: str | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs min: or max: (or both)")
        for b in (self.min, self.max):
            if b is not None and not math.isfinite(b):
                raise ValueError(f"a constraint bound must be a finite number, but got {b}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min <= max must hold, but got (min={self.min}, max={self.max})")
        if self.rate is not None and self.min is not None and self.min < 0:
            raise ValueError(f"a topic rate cannot be negative: min >= 0 must hold, but got {self.min}")
        if self.rate is not None and self.max is not None and self.max <= 0:
            raise ValueError(f"rate max > 0 must hold (no topic runs below 0 Hz), but got {self.max}")
        return self

    def label(self, namespace: str = "/") -> str:
        if self.name:
            return self.name
        s = self.signal(namespace).key
        lo = f"{self.min:g} <= " if self.min is not None else ""
        hi = f" <= {self.max:g}" if self.max is not None else ""
        return f"{lo}{s}{hi}"


class Objective(_Strict):
    """One of: `max_min_rate` {signal: weight} (the paper's), `maximize`, `minimize` (a signal)."""

    max_min_rate: dict[str, float] | None = None
    maximize: str | None = None
    minimize: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Objective:
        given = [k for k in ("max_min_rate", "maximize", "minimize") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of max_min_rate, maximize, minimize, but got {given or 'none'}"
            )
        if self.max_min_rate is not None:
            if not self.max_min_rate:
                raise ValueError("max_min_rate needs at least one topic: weight")
            for k, w in self.max_min_rate.items():
                if not (math.isfinite(w) and w > 0):
                    raise ValueError(f"a weight must be > 0, but {k!r} has {w}")
                _objective_signal(k, "/")
        for k in (self.maximize, self.minimize):
            if k is not None:
                _objective_signal(k, "/")
        return self

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "minimize" if self.minimize is not None else "maximize"

    def terms(self, namespace: str) -> list[tuple[Signal, float]]:
        """(signal, weight) pairs; a single maximise/minimise is one term of weight 1."""
        if self.max_min_rate is not None:
            return [(_objective_signal(k, namespace), w) for k, w in self.max_min_rate.items()]
        return [(_objective_signal(self.maximize or self.minimize or "", namespace), 1.0)]


def _objective_signal(text: str, namespace: str) -> Signal:
    """An objective term: a topic (its rate) or a <node>:<metric> (a ':' is never part of a ROS name)."""
    return parse_signal("metric" if ":" in text else "rate", text, namespace)


KnobKind = Literal["cpu_quota", "cpu_weight", "rate_cap", "parameter", "affinity", "power_mode"]


class Knob(_Strict):
    """A knob and its bounds. `prefer`: the end most likely to satisfy the core constraints (the first trial)."""

    kind: KnobKind
    node: str | None = None  # every kind but power_mode acts on a node
    min: float | None = None
    max: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    choices: list[Union[str, int, float]] | None = None  # noqa: UP007 - pydantic on 3.10
    name: str | None = None  # parameter: its name
    topic: str | None = None  # rate_cap: the subscription's topic
    type: Literal["int", "float"] = "float"
    prefer: Literal["low", "high"] | None = None
    profile: str | None = None  # power_mode: the hardware profile whose modes the choices are

    @model_validator(mode="after")
    def _shape(self) -> Knob:
        k = self.kind
        if k != "power_mode" and not self.node:
            raise ValueError(f"a {k} knob needs node: <name>")
        if k == "power_mode" and self.node:
            raise ValueError("a power_mode knob acts on the platform: leave node: out")
        if k == "parameter" and not self.name:
            raise ValueError("a parameter knob needs name: <parameter>")
        if k == "rate_cap" and not self.topic:
            raise ValueError("a rate_cap knob needs topic: <the subscription's topic>")
        if k in ("affinity", "power_mode"):
            if not self.choices:
                raise ValueError(f"a {k} knob needs choices: [...]")
            return self
        if self.choices is not None:
            if k != "parameter":
                raise ValueError(f"choices: is for parameter, affinity and power_mode knobs, not {k}")
            return self
        if self.min is None or self.max is None:
            raise ValueError(f"a {k} knob needs min: and max: (or choices:)")
        if not self.min < self.max:
            raise ValueError(f"min < max must hold, but got (min={self.min}, max={self.max})")
        if k == "cpu_quota" and not self.min >= 0.01:
            raise ValueError(f"a CPU quota is at least 0.01 cores, but min={self.min}")
        if k == "cpu_weight" and not (self.min >= 0.01 and self.max <= 100):
            raise ValueError(
                f"a CPU weight is relative to the default (1.0) within [0.01, 100], but got [{self.min}, {self.max}]"
            )
        if k == "rate_cap" and not self.min > 0:
            raise ValueError(f"a rate cap's min must be > 0 Hz (0 means no cap), but got {self.min}")
        if self.log and self.min <= 0:
            raise ValueError(f"log: true needs min > 0, but got min={self.min}")
        if self.type == "int" and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError(f"an int knob needs whole bounds, but got [{self.min}, {self.max}]")
        return self

    @property
    def key(self) -> str:
        """The knob's name in a configuration and in the Optuna study."""
        if self.kind == "power_mode":
            return "power_mode"
        detail = self.name if self.kind == "parameter" else self.topic if self.kind == "rate_cap" else None
        return f"{self.node}:{self.kind}" + (f":{detail}" if detail else "")

    def preferred(self, core: bool) -> Any:
        """The value most likely feasible: `prefer`, else resources high on core nodes, low elsewhere."""
        if self.choices is not None:
            return self.choices[-1 if (self.prefer or ("high" if core else "low")) == "high" else 0]
        want = self.prefer or ("high" if core and self.kind in ("cpu_quota", "cpu_weight") else "low")
        value = self.max if want == "high" else self.min
        return int(value) if self.type == "int" else value


class NodeSpec(_Strict):
    """A node of the specification. Essential nodes get at least `quota_floor` cores from any CPU quota."""

    essential: bool = False
    quota_floor: float | None = Field(None, ge=0.01)
    cgroup: bool = True  # place its process (and children) in tether/<stack>/<node>
    # The node runs on this machine: its telemetry's pid is a local process ConfigBot may place, pin and
    # account. False for a node elsewhere on the bus (a cloud service): parameters and metrics only.
    local: bool = True


class TrialSpec(_Strict):
    settle_s: float = Field(3.0, ge=0, le=600, description="seconds after applying before measuring")
    measure_s: float = Field(3.0, gt=0, le=3600)
    max_trials: int = Field(10, ge=1, le=10_000)
    startup_trials: int = Field(
        4, ge=1, le=1000, description="trials before the GP takes over (the probe included)"
    )
    patience: int = Field(
        4, ge=1, le=1000, description="stop after this many trials without a better feasible one"
    )
    min_improvement: float = Field(0.02, ge=0, le=1, description="relative gain that counts as better")
    margin: float = Field(
        0.05, ge=0, le=0.5, description="a trial is feasible only this fraction inside every bound (headroom)"
    )
    abort_ratio: float = Field(
        0.5, ge=0, le=1, description="a core rate below this fraction of its minimum for 2 s aborts the trial"
    )
    confirm: int = Field(
        2,
        ge=0,
        le=20,
        description="re-measure the best configuration before converging on it (with half the margin); one "
        "that no longer holds gives way to the next best, at most this many times (0: no confirmation). "
        "With it on, a library configuration that misses its verification is measured once more before "
        "it is dropped",
    )
    seed: int = Field(0, ge=0)


class MonitorSpec(_Strict):
    window_s: float = Field(10.0, ge=1, le=3600, description="violations are counted over this window")
    max_violation_fraction: float = Field(0.3, gt=0, le=1, description="above it, ConfigBot retunes")
    node_timeout_s: float = Field(
        3.0, gt=0, le=120, description="no telemetry for this long: the node is gone"
    )
    startup_s: float = Field(3.0, ge=0, le=600, description="measure this long before the first decision")


class ContextSignal(_SignalRef):
    bins: list[float] = Field(min_length=1)

    @field_validator("bins")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        if v != sorted(v):
            raise ValueError(f"bins must be ascending, but got {v}")
        return v


class ScanDensity(_Strict):
    """Obstacle density: the fraction of LiDAR beams closer than `near_m`."""

    scan: str
    near_m: float = Field(1.0, gt=0, le=100)
    bins: list[float] = Field([0.15], min_length=1)


class ContextSpec(_Strict):
    """The context fingerprint: background load (runnable tasks outside the spec's nodes), obstacle density,
    the power mode, and any signal with bins. A fingerprint must hold `stable_s` to count as new."""

    load_bins: list[float] | None = Field(
        [1.5],
        description="background runnable tasks (CPU demand outside the spec's nodes); None leaves load out",
    )
    obstacle_density: ScanDensity | None = None
    power_mode: bool = True
    signals: dict[str, ContextSignal] = {}
    stable_s: float = Field(4.0, ge=0, le=600)
    window_s: float = Field(4.0, gt=0, le=600, description="each part is measured over this window")
    hysteresis: float = Field(
        0.25, ge=0, le=1, description="a value must pass a bin edge by this fraction of it to change bins"
    )
    library: bool = True


class Spec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    namespace: str = "/"
    stack: str = Field("robot", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="cgroup tether/<stack>")
    nodes: dict[str, NodeSpec] = {}
    constraints: list[Constraint] = Field(min_length=1)
    objective: Objective | None = None
    knobs: list[Knob] = []
    trial: TrialSpec = TrialSpec()
    monitor: MonitorSpec = MonitorSpec()
    context: ContextSpec = ContextSpec()

    # -- derived ------------------------------------------------------------------------------
    def fqn(self, node: str) -> str:
        return qualify(node, self.namespace)

    def node_names(self) -> list[str]:
        """Fully qualified names of every node the spec mentions (nodes, knobs, metrics)."""
        names = {self.fqn(n) for n in self.nodes}
        names |= {self.fqn(k.node) for k in self.knobs if k.node}
        for c in self.constraints:
            s = c.signal(self.namespace)
            if s.kind == "metric" and s.node != STACK:
                names.add(s.node or "")
        return sorted(names)

    def node_spec(self, fqn: str) -> NodeSpec:
        for n, ns in self.nodes.items():
            if self.fqn(n) == fqn:
                return ns
        return NodeSpec()

    def is_core_node(self, fqn: str) -> bool:
        return self.node_spec(fqn).essential

    def core_constraints(self) -> list[Constraint]:
        return [c for c in self.constraints if c.core]

    def signals(self) -> list[Signal]:
        """Every signal the profiler must measure (constraints, objective, context signals)."""
        out: dict[str, Signal] = {}
        for c in self.constraints:
            s = c.signal(self.namespace)
            out[s.key] = s
        if self.objective is not None:
            for s, _ in self.objective.terms(self.namespace):
                out[s.key] = s
        for cs in self.context.signals.values():
            s = cs.signal(self.namespace)
            out[s.key] = s
        return list(out.values())

    def knob(self, key: str) -> Knob:
        for k in self.knobs:
            if k.key == key:
                return k
        raise KeyError(f"no knob {key!r}; the spec has {', '.join(k.key for k in self.knobs) or 'none'}")


def _check_semantics(spec: Spec, lines: dict[tuple, int], path: Path) -> None:
    """Checks across fields, each at the line of the field to fix."""

    def fail(loc: tuple, message: str) -> None:
        raise SpecError(path, lines.get(loc), message)

    import os

    cores = os.cpu_count() or 1
    seen: dict[str, int] = {}
    for i, k in enumerate(spec.knobs):
        if k.key in seen:
            fail(("knobs", i), f"knob {k.key} appears twice (knobs {seen[k.key]} and {i}); keep one")
        seen[k.key] = i
        if k.node and spec.fqn(k.node) == spec.fqn(STACK):
            fail(("knobs", i, "node"), f"{STACK!r} is reserved for aggregate signals; name a node")
        if (
            k.kind in ("cpu_quota", "cpu_weight", "affinity")
            and not spec.node_spec(spec.fqn(k.node or "")).local
        ):
            fail(
                ("knobs", i, "kind"),
                f"a {k.kind} knob needs the node on this machine, but {k.node} has local: false",
            )
        if k.kind == "cpu_quota":
            if k.max is not None and k.max > cores:
                fail(
                    ("knobs", i, "max"),
                    f"a CPU quota above this machine's {cores} cores limits nothing: max <= {cores} must hold, "
                    f"but got {k.max}",
                )
            floor = spec.node_spec(spec.fqn(k.node or "")).quota_floor
            if floor is not None and k.max is not None and floor > k.max:
                fail(
                    ("knobs", i, "max"),
                    f"node {k.node} has quota_floor {floor} above this knob's max {k.max}; raise max or lower the floor",
                )
    for n, ns in spec.nodes.items():
        if ns.quota_floor is not None and ns.quota_floor > cores:
            fail(
                ("nodes", n, "quota_floor"),
                f"quota_floor {ns.quota_floor} exceeds this machine's {cores} cores",
            )
    if spec.objective is not None and spec.objective.max_min_rate is not None:
        core = {c.signal(spec.namespace).key for c in spec.constraints if c.core}
        for t in spec.objective.max_min_rate:
            if _objective_signal(t, spec.namespace).key in core:
                fail(
                    ("objective", "max_min_rate", t),
                    f"{t} is a core constraint's signal; the objective weighs non-core topics (the paper's)",
                )
    if spec.trial.startup_trials > spec.trial.max_trials:
        fail(
            ("trial", "startup_trials"),
            f"startup_trials <= max_trials must hold, but got ({spec.trial.startup_trials}, {spec.trial.max_trials})",
        )


SPECS_DIR = Path(__file__).resolve().parent / "specs"


def spec_path(name: Path | str) -> Path:
    """A bundled specification by name (`sim_robot`, in edge/configbot/specs/) or a path to a YAML file."""
    text = str(name)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    path = SPECS_DIR / f"{text}.yaml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.yaml")))
        raise SpecError(
            path, None, f"no bundled specification {text!r}; bundled: {bundled}, or give a .yaml path"
        )
    return path


def load_spec(path: Path | str) -> Spec:
    """Parse and validate a specification (a file, or a bundled one by name); SpecError names the file,
    the line and the fix."""
    path = spec_path(path)
    try:
        data, lines = parse_yaml(path)
        spec = validate_data(Spec, data, lines, path)
    except SpecError:
        raise
    except ConfigFileError as exc:
        raise SpecError(exc.path, exc.line, exc.message) from None
    _check_semantics(spec, lines, path)
    return spec
