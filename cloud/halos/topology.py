"""Simulated geography for HALoS (arXiv 2506.04531): regions, links, worker speeds, and time costs.

Communication time over a link is latency + bytes * 8 / bandwidth (the reference's model plus a
latency term); compute time of a local step is `step_time_s / s_i`, s_i the worker's speed relative
to the fastest (the reference: 238 ms per step for the fastest worker).

A topology whose step time was measured on another model (`step_time_bytes`: the reference's 238 ms
is Pythia-70M, 281.7 MB in float32) is rescaled to the model actually trained by `for_model`: compute
time and latency shrink by (our bytes / its bytes), so every ratio of compute, latency and transfer
time (bytes / bandwidth) is the reference's. The simulated clock is then the reference's clock times
that factor.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from tether.cloud.halos.config import HalosConfigError

__all__ = ["DEFAULT_TOPOLOGY", "Topology", "WorkerPlace", "local_steps_for"]

# The benchmark's 4 x 4 geography (the reference environment); see the file for sources.
DEFAULT_TOPOLOGY = Path(__file__).with_name("regions_4x4.yaml")


@dataclass(frozen=True)
class WorkerPlace:
    """Where a worker sits and how fast it is."""

    worker_id: int
    region: int
    speed: float  # raw speed from the topology
    relative_speed: float  # speed / fastest speed, in (0, 1]


@dataclass(frozen=True)
class Topology:
    """Regions with a bandwidth (Gbps) and one-way latency (s) matrix, and worker speeds per region."""

    bandwidth_gbps: tuple[tuple[float, ...], ...]
    latency_s: tuple[tuple[float, ...], ...]
    speeds: tuple[tuple[float, ...], ...]  # speeds[r] = the speeds of region r's workers
    step_time_s: float = 0.238
    source: str = "<code>"
    # bytes of the model whose step `step_time_s` is (None: the step time is for the model trained)
    step_time_bytes: float | None = None

    def __post_init__(self) -> None:
        n = len(self.bandwidth_gbps)
        where = f" ({self.source})"
        if n < 1:
            raise HalosConfigError(f"Topology needs >= 1 region, but bandwidth_gbps is empty{where}")
        for name, mat in (("bandwidth_gbps", self.bandwidth_gbps), ("latency_s", self.latency_s)):
            if len(mat) != n or any(len(row) != n for row in mat):
                raise HalosConfigError(
                    f"Topology.{name} must be {n}x{n} (one row and column per region), but got rows of "
                    f"lengths {[len(r) for r in mat]}{where}"
                )
        for i, j in itertools.product(range(n), repeat=2):
            if not self.bandwidth_gbps[i][j] > 0:
                raise HalosConfigError(
                    f"Topology.bandwidth_gbps[{i}][{j}] > 0 must hold, but got {self.bandwidth_gbps[i][j]}{where}"
                )
            if not self.latency_s[i][j] >= 0:
                raise HalosConfigError(
                    f"Topology.latency_s[{i}][{j}] >= 0 must hold, but got {self.latency_s[i][j]}{where}"
                )
        if len(self.speeds) != n or any(len(s) == 0 for s in self.speeds):
            raise HalosConfigError(
                f"Topology.speeds needs one non-empty list per region ({n}), but got "
                f"{[len(s) for s in self.speeds]}{where}"
            )
        if any(not v > 0 for region in self.speeds for v in region):
            raise HalosConfigError(f"Topology.speeds must all be > 0, but got {self.speeds}{where}")
        if not self.step_time_s > 0:
            raise HalosConfigError(f"Topology.step_time_s > 0 must hold, but got {self.step_time_s}{where}")
        if self.step_time_bytes is not None and not self.step_time_bytes > 0:
            raise HalosConfigError(
                f"Topology.step_time_bytes > 0 must hold, but got {self.step_time_bytes}{where}; "
                "give the model bytes the step time was measured on, or leave it out"
            )

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> Topology:
        """Read `bandwidth_gbps`, `latency_ms`, `worker_speeds`, `step_time_ms` and `step_time_model_bytes`
        from a YAML file."""
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise HalosConfigError(f"cannot read topology file {path}: {err}") from err
        if not isinstance(doc, dict):
            raise HalosConfigError(f"{path}:1: a topology file is a mapping, but got {type(doc).__name__}")
        for key in ("bandwidth_gbps", "worker_speeds"):
            if key not in doc:
                raise HalosConfigError(
                    f"{path}: the key {key!r} is required; see bench/halos/regions_4x4.yaml"
                )
        bw = tuple(tuple(float(v) for v in row) for row in doc["bandwidth_gbps"])
        n = len(bw)
        lat_ms = doc.get("latency_ms", [[0.0] * n for _ in range(n)])
        return cls(
            bandwidth_gbps=bw,
            latency_s=tuple(tuple(float(v) / 1000.0 for v in row) for row in lat_ms),
            speeds=tuple(tuple(float(v) for v in row) for row in doc["worker_speeds"]),
            step_time_s=float(doc.get("step_time_ms", 238.391)) / 1000.0,
            source=str(path),
            step_time_bytes=(
                None if doc.get("step_time_model_bytes") is None else float(doc["step_time_model_bytes"])
            ),
        )

    @classmethod
    def default(cls) -> Topology:
        """The committed 4 regions x 4 workers topology (`regions_4x4.yaml`)."""
        return cls.from_yaml(DEFAULT_TOPOLOGY)

    @classmethod
    def single(cls, workers: int = 1, speed: float = 1.0, step_time_s: float = 0.238) -> Topology:
        """One region, `workers` equal workers, no delay on any link (bandwidth effectively infinite)."""
        return cls(((1e12,),), ((0.0,),), ((speed,) * workers,), step_time_s, source="single")

    def for_model(self, n_bytes: int) -> Topology:
        """This geography for a model of `n_bytes`: when the step time was measured on a model of
        `step_time_bytes`, compute time and latencies scale by n_bytes / step_time_bytes, so compute,
        latency and transfer (n_bytes / bandwidth) keep the proportions they have for that model."""
        if self.step_time_bytes is None or self.step_time_bytes == n_bytes:
            return self
        f = n_bytes / self.step_time_bytes
        return replace(
            self,
            step_time_s=self.step_time_s * f,
            latency_s=tuple(tuple(v * f for v in row) for row in self.latency_s),
            step_time_bytes=float(n_bytes),
        )

    # -- queries --------------------------------------------------------------------------------

    @property
    def n_regions(self) -> int:
        return len(self.bandwidth_gbps)

    def workers(self) -> list[WorkerPlace]:
        """Every worker, numbered region by region."""
        fastest = max(v for region in self.speeds for v in region)
        out: list[WorkerPlace] = []
        for r, region in enumerate(self.speeds):
            for v in region:
                out.append(WorkerPlace(len(out), r, v, v / fastest))
        return out

    def check_region(self, region: int, what: str) -> None:
        if not 0 <= region < self.n_regions:
            raise HalosConfigError(
                f"{what} = {region} must name a region 0..{self.n_regions - 1} of topology {self.source}"
            )

    def comm_time(self, n_bytes: int, src: int, dst: int) -> float:
        """Seconds to move `n_bytes` from region `src` to region `dst`: latency + bytes * 8 / bandwidth."""
        return self.latency_s[src][dst] + n_bytes * 8.0 / (self.bandwidth_gbps[src][dst] * 1e9)

    def compute_time(self, n_steps: int, relative_speed: float) -> float:
        """Seconds for `n_steps` local steps on a worker of this relative speed."""
        return n_steps * self.step_time_s / relative_speed

    def task_time(self, n_bytes: int, place: WorkerPlace, server_region: int, n_steps: int) -> float:
        """Seconds of one asynchronous task: the model down, `n_steps` local steps, the delta back."""
        return (
            self.comm_time(n_bytes, server_region, place.region)
            + self.compute_time(n_steps, place.relative_speed)
            + self.comm_time(n_bytes, place.region, server_region)
        )

    def lockstep_round_time(self, n_bytes: int, steps: list[int]) -> float:
        """Seconds of one lock-step round (sync, DiLoCo): worker i runs steps[i] local steps, the
        slowest finishes, then one all-reduce of `n_bytes`."""
        places = self.workers()
        compute = max(self.compute_time(h, p.relative_speed) for h, p in zip(steps, places, strict=True))
        return compute + self.allreduce_time(n_bytes)

    def best_ring(self) -> tuple[float, float]:
        """(bandwidth Gbps, latency s) of the bottleneck link of the best ring through all regions."""
        n = self.n_regions
        if n == 1:
            return self.bandwidth_gbps[0][0], self.latency_s[0][0]
        best = (0.0, math.inf)
        for perm in itertools.permutations(range(1, n)):
            ring = (0, *perm)
            links = [(ring[k], ring[(k + 1) % n]) for k in range(n)]
            bw = min(self.bandwidth_gbps[a][b] for a, b in links)
            lat = max(self.latency_s[a][b] for a, b in links)
            if bw > best[0] or (bw == best[0] and lat < best[1]):
                best = (bw, lat)
        return best

    def allreduce_time(self, n_bytes: int) -> float:
        """Seconds for a hierarchical all-reduce of `n_bytes` over every worker.

        Reduce inside each region, ring all-reduce between regions over the best ring (2(R-1)/R of
        the bytes through its bottleneck link, 2(R-1) latencies), broadcast inside each region. This
        is kinder to the synchronous baselines than the reference's flat ring over all workers.
        """
        n = self.n_regions
        intra = max(self.comm_time(n_bytes, r, r) for r in range(n))
        if n == 1:
            return 2 * intra if sum(len(s) for s in self.speeds) > 1 else 0.0
        bw, lat = self.best_ring()
        inter = 2 * (n - 1) * lat + 2 * (n - 1) / n * n_bytes * 8.0 / (bw * 1e9)
        return 2 * intra + inter


def local_steps_for(h: int, relative_speed: float, speed_scaled: bool) -> int:
    """H_i = max(1, ceil(H * s_i)) when scaled by speed, else H."""
    if not speed_scaled:
        return h
    # round first: 8 * 1.0 must stay 8 despite float noise in s_i
    return max(1, math.ceil(round(h * relative_speed, 9)))
