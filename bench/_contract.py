"""Rows, reports and the machine record of the benchmark contract (the Foundation issue)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

Direction = Literal["higher", "lower"]

KEY_PACKAGES = (
    "torch",
    "eclipse-zenoh",
    "rosbags",
    "mujoco",
    "onnxruntime",
    "optuna",
    "ray",
    "torch_geometric",
)


@dataclass
class Row:
    """One figure of a benchmark. `ratio` > 1 means better than `baseline`; see `row`."""

    name: str
    params: dict[str, Any]
    value: float | None
    unit: str
    n: int
    stdev: float | None
    baseline: str | None
    baseline_value: float | None
    ratio: float | None
    direction: Direction
    target: float | None
    meets_target: bool | None


def _median(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.median(vals) if vals else None


def _stdev(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return statistics.stdev(vals) if len(vals) >= 2 else 0.0 if vals else None


def row(
    name: str,
    values: Sequence[float] | float,
    unit: str,
    direction: Direction,
    *,
    params: dict[str, Any] | None = None,
    baseline: str | None = None,
    baseline_values: Sequence[float] | float | None = None,
    target: float | None = None,
) -> Row:
    """A contract row from repeated measurements.

    `values` (and `baseline_values`) are the repeats; the row carries their median.
    With a baseline, ratio = value / baseline for "higher" and baseline / value for
    "lower", and the target applies to the ratio; without one, the target applies to
    the value in the stated direction.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', but got {direction!r}")
    vals = [values] if isinstance(values, (int, float)) else list(values)
    value = _median(vals)
    base_value = None
    ratio = None
    if baseline is not None:
        if baseline_values is None:
            raise ValueError(f"row {name!r} names baseline {baseline!r} but gives no baseline_values")
        bvals = [baseline_values] if isinstance(baseline_values, (int, float)) else list(baseline_values)
        base_value = _median(bvals)
        if value is not None and base_value is not None:
            num, den = (value, base_value) if direction == "higher" else (base_value, value)
            ratio = num / den if den else (math.inf if num > 0 else None)
    meets = None
    if target is not None:
        if baseline is not None:
            meets = ratio is not None and ratio >= target
        elif value is None:
            meets = False
        else:
            meets = value >= target if direction == "higher" else value <= target
    return Row(
        name=name,
        params=dict(params or {}),
        value=value,
        unit=unit,
        n=len(vals),
        stdev=_stdev(vals),
        baseline=baseline,
        baseline_value=base_value,
        ratio=ratio,
        direction=direction,
        target=target,
        meets_target=meets,
    )


def repeat(fn: Callable[[], float], n: int = 3, warmup: int = 1) -> list[float]:
    """Run `fn` `warmup` times unrecorded, then `n` times; returns the n measurements."""
    if n < 1:
        raise ValueError(f"n >= 1 must hold, but got n={n}")
    for _ in range(warmup):
        fn()
    return [float(fn()) for _ in range(n)]


@dataclass
class BenchContext:
    """What a benchmark is asked to do. `quick`: tiny sizes, < 60 s, checks the contract only."""

    system: str
    quick: bool = False
    large: bool = False
    out_dir: Path = Path("bench/results")
    options: dict[str, str] = field(default_factory=dict)

    def progress(self, message: str) -> None:
        print(f"[bench {self.system}] {message}", flush=True)


@dataclass
class BenchReport:
    """Rows plus an optional plot: `plot(path)` writes the PNG."""

    rows: list[Row]
    plot: Callable[[Path], None] | None = None
    notes: list[str] = field(default_factory=list)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    versions = {}
    for pkg in KEY_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": psutil.virtual_memory().total,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": versions.get("torch"),
        "packages": versions,
        "git_commit": _git_commit(),
    }


def write_report(ctx: BenchContext, report: BenchReport) -> Path:
    """Write `<out>/<system>.json` (and `.png` when the report can plot); returns the JSON path."""
    if not report.rows:
        raise ValueError(f"benchmark {ctx.system!r} returned no rows; the contract needs at least one")
    if all(r.target is None for r in report.rows):
        raise ValueError(f"benchmark {ctx.system!r} has no row with a target; the contract needs one")
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "system": ctx.system,
        "quick": ctx.quick,
        "large": ctx.large,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "results": [asdict(r) for r in report.rows],
        "notes": report.notes,
    }
    path = ctx.out_dir / f"{ctx.system}.json"
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    if report.plot is not None:
        report.plot(ctx.out_dir / f"{ctx.system}.png")
    return path
