"""CPU control groups for the edge side: the one module that creates, fills, limits and removes cgroups.

Layout: `tether/<stack>/<node>` under the cpu hierarchy (cgroup v2: `cpu.max`; v1: the `cpu`
hierarchy for `cpu.cfs_quota_us` and, where it is mounted apart, the `cpuacct` hierarchy for
usage). A quota is in cores: 1.5 = one and a half cores' worth of CPU time per period. The
hardware-profile emulation limits the stack; ConfigBot's CPU-quota actuator limits nodes.

Ownership: each manager has a run id, and records the groups it created in a state file
(`/run/tether/cgroups/<run_id>.json`, tmpfs like cgroupfs, so both vanish at reboot) with its
pid and that process's start time. A new manager removes the groups of runs whose process is
gone (a crashed run), never those a live run recorded.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "CgroupError",
    "CgroupLayout",
    "CgroupManager",
    "CgroupPermissionError",
    "cleanup_stale",
    "default_state_dir",
    "detect_layout",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CgroupError(RuntimeError):
    """A cgroup operation failed; the message says what and how to fix it. Recoverable by the caller."""


class CgroupPermissionError(CgroupError):
    """This process may not write the cgroup hierarchy (not root, no delegated subtree)."""


@dataclass(frozen=True)
class CgroupLayout:
    """Where the cpu controller lives. `acct` is the v1 cpuacct hierarchy (== cpu when co-mounted)."""

    version: int  # 1 or 2
    cpu: Path
    acct: Path

    @property
    def hierarchies(self) -> tuple[Path, ...]:
        return (self.cpu,) if self.acct == self.cpu else (self.cpu, self.acct)


def detect_layout(root: Path = CGROUP_ROOT) -> CgroupLayout:
    """v2 when the unified hierarchy offers the cpu controller, else v1 (cpu + cpuacct); CgroupError if neither."""
    controllers = root / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        return CgroupLayout(2, root, root)
    cpu = root / "cpu"
    if (cpu / "cpu.cfs_quota_us").is_file():
        acct = root / "cpuacct"
        acct = acct if (acct / "cpuacct.usage").is_file() else cpu
        if (cpu / "cpuacct.usage").is_file():  # co-mounted "cpu,cpuacct"
            acct = cpu
        return CgroupLayout(1, cpu, acct if acct.resolve() != cpu.resolve() else cpu)
    raise CgroupError(
        f"no cgroup cpu controller found under {root}: neither cgroup v2 with 'cpu' in cgroup.controllers "
        f"nor a v1 'cpu' hierarchy with cpu.cfs_quota_us; CPU quotas need one of them"
    )


def default_state_dir() -> Path:
    """/run/tether/cgroups: on tmpfs, cleared at boot as cgroups are."""
    return Path("/run/tether/cgroups")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise CgroupError(f"a cgroup {kind} name must match {_NAME.pattern}, but got {name!r}")
    return name


def _alive(pid: int, create_time: float) -> bool:
    """The process that recorded a run still runs (a zombie does not: it has exited, only unreaped)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _own_cgroup(layout: CgroupLayout, hierarchy: Path) -> Path:
    """The cgroup this process is in, in `hierarchy`: where leftover processes are moved before a removal."""
    want = "" if layout.version == 2 else ("cpuacct" if hierarchy == layout.acct != layout.cpu else "cpu")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (layout.version == 2 and controllers == "") or want in controllers.split(","):
            return hierarchy / path.lstrip("/")
    return hierarchy


def _rmdir(layout: CgroupLayout, hierarchy: Path, rel: str) -> bool:
    """Remove one group, first moving any process left in it to our own group. False if it stays."""
    path = hierarchy / rel
    if not path.is_dir():
        return True
    for attempt in range(20):
        try:
            procs = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            procs = []
        target = _own_cgroup(layout, hierarchy) / "cgroup.procs"
        for pid in procs:
            try:
                target.write_text(str(pid))
            except OSError:
                pass  # exited meanwhile
        try:
            path.rmdir()
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return True
            if exc.errno != errno.EBUSY or attempt == 19:
                return False
            time.sleep(0.01)  # a child group, or a process still exiting
    return False


def cleanup_stale(root: Path = CGROUP_ROOT, state_dir: Path | None = None) -> list[str]:
    """Remove the groups of crashed runs (state record whose process is gone); returns the paths removed."""
    state_dir = state_dir or default_state_dir()
    if not state_dir.is_dir():
        return []
    records = []
    for f in sorted(state_dir.glob("*.json")):
        try:
            records.append((f, json.loads(f.read_text())))
        except (OSError, ValueError):
            continue
    live_paths = set()
    for _, rec in records:
        if _alive(rec["pid"], rec["create_time"]):
            live_paths.update(rec["created"])
            live_paths.update(rec.get("joined", []))
    try:
        layout = detect_layout(root)
    except CgroupError:
        return []
    removed: list[str] = []
    for f, rec in records:
        if _alive(rec["pid"], rec["create_time"]):
            continue
        keep = False
        for rel in reversed(rec["created"]):
            # Never a path a live run uses, nor one holding something a live run created.
            if any(p == rel or p.startswith(rel + "/") for p in live_paths):
                keep = True
                continue
            ok = all(_rmdir(layout, h, rel) for h in layout.hierarchies)
            if ok:
                removed.append(rel)
            keep |= not ok
        if not keep:
            f.unlink(missing_ok=True)
    return removed


class CgroupManager:
    """The cgroups of one stack, `tether/<stack>/<node>`. Not thread-safe: one owner thread.

    `join=True` attaches to a stack another run created (the launcher's hook), to set quotas or
    place more nodes; only groups this manager created are removed by `close()`.
    """

    def __init__(
        self,
        stack: str,
        *,
        join: bool = False,
        root: Path = CGROUP_ROOT,
        state_dir: Path | None = None,
        run_id: str | None = None,
        period_us: int = 100_000,
    ) -> None:
        self.stack = _check_name("stack", stack)
        self.layout = detect_layout(root)
        self.run_id = run_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.period_us = period_us
        self.state_dir = state_dir or default_state_dir()
        self._created: list[str] = []
        self._joined: list[str] = []
        self._closed = False
        self._check_writable()
        cleanup_stale(root, self.state_dir)
        self._ensure("tether")
        stack_rel = f"tether/{self.stack}"
        if self.layout.cpu.joinpath(stack_rel).is_dir() and not join:
            owner = self._live_owner(stack_rel)
            if owner is not None:
                raise CgroupError(
                    f"cgroup {stack_rel} belongs to live run {owner}; use another stack name, or "
                    f"CgroupManager({self.stack!r}, join=True) to work inside it"
                )
        if join:
            self._joined.append(stack_rel)
        self._ensure(stack_rel)
        self._save()

    # ---- paths and bookkeeping -------------------------------------------------------------
    def path(self, node: str | None = None) -> str:
        """The group's path relative to the hierarchy root: tether/<stack>[/<node>]."""
        return f"tether/{self.stack}" if node is None else f"tether/{self.stack}/{_check_name('node', node)}"

    def _check_writable(self) -> None:
        for h in self.layout.hierarchies:
            target = h / "tether" if (h / "tether").is_dir() else h
            if not os.access(target, os.W_OK):
                raise CgroupPermissionError(
                    f"no permission to create cgroups under {target} (cgroup v{self.layout.version}): run as root, "
                    f"or delegate a subtree once with `sudo mkdir -p {h}/tether && sudo chown -R $USER {h}/tether`"
                )

    def _live_owner(self, rel: str) -> str | None:
        for f in self.state_dir.glob("*.json"):
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if (
                rec["run_id"] != self.run_id
                and rel in rec["created"]
                and _alive(rec["pid"], rec["create_time"])
            ):
                return f"{rec['run_id']} (pid {rec['pid']})"
        return None

    def _save(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            rec = {
                "run_id": self.run_id,
                "pid": os.getpid(),
                "create_time": psutil.Process().create_time(),
                "stack": self.stack,
                "created": self._created,
                "joined": self._joined,
            }
            tmp = self.state_dir / f".{self.run_id}.tmp"
            tmp.write_text(json.dumps(rec))
            tmp.replace(self.state_dir / f"{self.run_id}.json")
        except OSError as exc:
            raise CgroupError(f"cannot record cgroup ownership in {self.state_dir}: {exc.strerror}") from None

    def _ensure(self, rel: str) -> None:
        made = False
        for h in self.layout.hierarchies:
            path = h / rel
            if path.is_dir():
                continue
            try:
                path.mkdir()
                made = True
            except FileExistsError:
                pass
            except PermissionError:
                raise CgroupPermissionError(
                    f"no permission to create {path}: run as root, or delegate {h}/tether to this user"
                ) from None
        if self.layout.version == 2:
            # A child gets the cpu controller only if its parent enables it for its subtree.
            ctl = (self.layout.cpu / rel).parent / "cgroup.subtree_control"
            if not ctl.is_file() or "cpu" not in ctl.read_text().split():
                ctl.write_text("+cpu")
        if made and rel != "tether":
            self._created.append(rel)

    # ---- the public operations ---------------------------------------------------------------
    def place(self, node: str, pid: int, *, children: bool = True) -> list[int]:
        """Move process `pid` (and its descendants) into tether/<stack>/<node>; returns the pids moved."""
        rel = self.path(node)
        self._ensure(rel)
        self._save()
        try:
            proc = psutil.Process(pid)
            procs = [proc] + (proc.children(recursive=True) if children else [])
        except psutil.NoSuchProcess:
            raise CgroupError(f"cannot place pid {pid} in {rel}: no such process") from None
        moved = []
        for p in procs:
            for h in self.layout.hierarchies:
                try:
                    (h / rel / "cgroup.procs").write_text(str(p.pid))
                except ProcessLookupError:
                    break
                except PermissionError:
                    raise CgroupPermissionError(f"no permission to move pid {p.pid} into {h / rel}") from None
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise CgroupError(f"cannot move pid {p.pid} into {h / rel}: {exc.strerror}") from None
                    self._move_threads(h / rel, p.pid)
            else:
                moved.append(p.pid)
        return moved

    def _move_threads(self, group: Path, pid: int) -> None:
        """A process with realtime threads (e.g. zenoh's shared-memory watchdogs) cannot join a cpu group
        without an RT budget (EINVAL): on v1 its other threads move one by one, the realtime ones stay
        where they were (their CPU is not limited); v2 cannot split a process across groups."""
        if self.layout.version == 2:
            raise CgroupError(
                f"cannot move pid {pid} into {group}: it has realtime threads, and cgroup v2's cpu controller "
                "takes no realtime process outside the root group; run it without realtime threads"
            )
        realtime = (os.SCHED_FIFO, os.SCHED_RR)
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                if os.sched_getscheduler(int(tid)) in realtime:
                    continue
                (group / "tasks").write_text(tid)
            except (ProcessLookupError, FileNotFoundError):
                continue  # a thread that ended meanwhile
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ESRCH):
                    raise CgroupError(
                        f"cannot move thread {tid} of pid {pid} into {group}: {exc.strerror}"
                    ) from None

    def set_quota(self, node: str | None, cores: float | None) -> None:
        """Limit a node (or the whole stack, node=None) to `cores` of CPU; None removes the limit."""
        rel = self.path(node)
        if not self.layout.cpu.joinpath(rel).is_dir():
            raise CgroupError(
                f"cannot set a quota on {rel}: the group does not exist (place a process first)"
            )
        if cores is not None and not (math.isfinite(cores) and cores > 0):
            raise CgroupError(f"a CPU quota must be a positive number of cores or None, but got {cores!r}")
        d = self.layout.cpu / rel
        if self.layout.version == 2:
            quota = None if cores is None else max(1000, math.ceil(cores * self.period_us))
            (d / "cpu.max").write_text(f"{'max' if quota is None else quota} {self.period_us}")
            return
        # v1 refuses a child quota above its parent's (EINVAL); v2 simply applies both. So on v1 a
        # node asking for more than its stack gets the stack's (the same effect), and a stack being
        # lowered first lowers the nodes above it.
        cap = self._v1_cap(d.parent)
        if cap is not None and (cores is None or cores > cap):
            cores = cap
        if cores is not None:
            self._v1_clamp_children(d, cores)
        self._v1_write(d, cores)

    def _v1_write(self, d: Path, cores: float | None) -> None:
        quota = -1 if cores is None else max(1000, math.ceil(cores * self.period_us))
        (d / "cpu.cfs_period_us").write_text(str(self.period_us))
        (d / "cpu.cfs_quota_us").write_text(str(quota))

    def _v1_quota(self, d: Path) -> float | None:
        q = int((d / "cpu.cfs_quota_us").read_text())
        return None if q < 0 else q / int((d / "cpu.cfs_period_us").read_text())

    def _v1_cap(self, d: Path) -> float | None:
        """The smallest quota (cores) of `d` and its ancestors within the hierarchy, None if unlimited."""
        caps = []
        while d != self.layout.cpu and self.layout.cpu in d.parents:
            q = self._v1_quota(d)
            if q is not None:
                caps.append(q)
            d = d.parent
        return min(caps) if caps else None

    def _v1_clamp_children(self, d: Path, cores: float) -> None:
        for child in (c for c in d.iterdir() if c.is_dir()):
            q = self._v1_quota(child)
            if q is not None and q > cores:
                self._v1_clamp_children(child, cores)
                self._v1_write(child, cores)

    def quota(self, node: str | None = None) -> float | None:
        """The group's quota in cores, None when unlimited."""
        d = self.layout.cpu / self.path(node)
        if self.layout.version == 2:
            q, period = (d / "cpu.max").read_text().split()
            return None if q == "max" else int(q) / int(period)
        return self._v1_quota(d)

    def set_weight(self, node: str | None, weight: float) -> None:
        """A group's CPU weight among its siblings, relative to the default (1.0 = v1 cpu.shares 1024,
        v2 cpu.weight 100); it decides the split only while the CPU is contended (ConfigBot's actuator).
        A stack group competes as one entity with every process outside it, so a stack of n nodes
        needs weight n to keep the share its n processes had."""
        rel = self.path(node)
        d = self.layout.cpu / rel
        if not d.is_dir():
            raise CgroupError(
                f"cannot set a weight on {rel}: the group does not exist (place a process first)"
            )
        if not (math.isfinite(weight) and weight > 0):
            raise CgroupError(f"a CPU weight must be a positive number (1.0 = default), but got {weight!r}")
        self._write_weight(d, weight)
        if node is None:
            # `tether/` only contains stacks: its weight is the sum of theirs, so a stack's weight holds
            # against the processes outside tether as if the stack sat at the top of the hierarchy.
            top = self.layout.cpu / "tether"
            total = sum(self._read_weight(c) for c in top.iterdir() if c.is_dir())
            self._write_weight(top, max(total, 1.0))

    def _write_weight(self, d: Path, weight: float) -> None:
        if self.layout.version == 2:
            (d / "cpu.weight").write_text(str(min(10_000, max(1, round(weight * 100)))))
        else:
            (d / "cpu.shares").write_text(str(min(262_144, max(2, round(weight * 1024)))))

    def _read_weight(self, d: Path) -> float:
        if self.layout.version == 2:
            return int((d / "cpu.weight").read_text()) / 100
        return int((d / "cpu.shares").read_text()) / 1024

    def weight(self, node: str | None = None) -> float:
        """The group's CPU weight relative to the default (see set_weight)."""
        return self._read_weight(self.layout.cpu / self.path(node))

    def usage(self, node: str | None = None) -> float:
        """CPU time (s) the group's processes have used since it was created (user + system)."""
        rel = self.path(node)
        if self.layout.version == 2:
            for line in (self.layout.cpu / rel / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
            return 0.0
        return int((self.layout.acct / rel / "cpuacct.usage").read_text()) / 1e9

    def throttled(self, node: str | None = None) -> tuple[int, float]:
        """(periods throttled, seconds throttled) since creation: how often the quota bit."""
        stat = dict(
            line.split() for line in (self.layout.cpu / self.path(node) / "cpu.stat").read_text().splitlines()
        )
        if self.layout.version == 2:
            return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_usec", 0)) / 1e6
        return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_time", 0)) / 1e9

    def pids(self, node: str | None = None) -> list[int]:
        text = (self.layout.cpu / self.path(node) / "cgroup.procs").read_text()
        return [int(p) for p in text.split()]

    def nodes(self) -> list[str]:
        d = self.layout.cpu / self.path()
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def remove(self, node: str) -> None:
        """Remove a node's group (leftover processes move out first); only groups this manager created."""
        rel = self.path(node)
        if rel not in self._created:
            return
        if all(_rmdir(self.layout, h, rel) for h in self.layout.hierarchies):
            self._created.remove(rel)
            self._save()

    def close(self) -> None:
        """Remove every group this manager created (deepest first) and its state record."""
        if self._closed:
            return
        for rel in sorted(self._created, key=lambda r: -r.count("/")):
            if all(_rmdir(self.layout, h, rel) for h in self.layout.hierarchies):
                self._created.remove(rel)
        self._closed = True
        if self._created:
            self._save()  # what could not be removed stays recorded; a later run cleans it up
        else:
            (self.state_dir / f"{self.run_id}.json").unlink(missing_ok=True)

    def __enter__(self) -> CgroupManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
