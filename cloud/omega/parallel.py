"""Computation-graph parallel serving: the graph split over torch.distributed worker processes (gloo on
CPU), each aggregating the edges of the nodes it owns (OMEGA, arXiv 2501.08547, section 5).

`ParallelServer` starts `world_size` ranks on loopback (forked from a forkserver); rank 0 takes each request from the front
over a pipe, broadcasts it, every rank runs the same OmegaServer code with a GlooComm, and rank 0
returns the logits. Rank p owns existing node ids in its range and new node j when j mod P = p.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tether.cloud.omega.plan import Method
from tether.cloud.omega.request import Request, validate_request
from tether.cloud.omega.server import RequestStats

__all__ = ["ParallelServer", "free_port"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the rendezvous of the process group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _WorkerArgs:
    root: str  # bundle folder
    models: tuple[str, ...]
    world_size: int
    port: int
    threads: int


def _worker(rank: int, args: _WorkerArgs, conn) -> None:
    import torch.distributed as dist

    from tether.cloud.omega.bundle import Bundle
    from tether.cloud.omega.comm import GlooComm
    from tether.cloud.omega.server import OmegaServer
    from tether.cloud.omega.store import EmbeddingStore

    torch.set_num_threads(args.threads)
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=args.world_size
        )
        bundle = Bundle(Path(args.root))
        index = bundle.index(rank=rank, world_size=args.world_size)
        comm = GlooComm()
        servers = {
            name: OmegaServer(
                bundle.load_serving(name), index, EmbeddingStore.open(bundle.store_path(name)), comm=comm
            )
            for name in args.models
        }
        if conn is not None:
            conn.send(("ready", None))
        while True:
            cmd = conn.recv() if conn is not None else None
            cmd = comm.broadcast(cmd)
            if cmd is None:
                break
            request, method, name = cmd
            server = servers[name]
            out = server.infer(request, method)
            stats = comm.gather(server.last)
            if conn is not None:
                conn.send(("ok", (out, stats)))
    except Exception:  # the front reports it; a worker must not die silently
        if conn is not None:
            conn.send(("error", traceback.format_exc()))
        status = 1
    else:
        status = 0
    if dist.is_initialized():
        dist.destroy_process_group()
    # skip the interpreter's teardown of torch (seconds on a loaded machine): nothing is left to flush
    os._exit(status)


class ParallelServer:
    """A graph-parallel OMEGA server over `world_size` local processes; use as a context manager.

    `models`: one model name or several (the ranks load each once and share the graph index).
    """

    def __init__(
        self,
        root: Path,
        models: str | Sequence[str],
        world_size: int,
        *,
        threads: int | None = None,
        timeout: float = 300.0,
    ) -> None:
        if world_size < 1:
            raise ValueError(f"world_size >= 1 must hold, but got {world_size}")
        self.models = (models,) if isinstance(models, str) else tuple(models)
        from tether.cloud.omega.bundle import Bundle

        index = Bundle(Path(root)).index()
        self.num_nodes, self.feature_dim = index.num_nodes, index.feature_dim
        threads = threads or max(1, (torch.get_num_threads()) // world_size)
        args = _WorkerArgs(str(root), self.models, world_size, free_port(), threads)
        # forkserver: one process imports torch once (preload) and forks every rank from it, so
        # ranks start in a fraction of a second instead of each importing torch (seconds)
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tether.cloud.omega.parallel", "tether.cloud.omega.bundle"])
        self._conn, child = ctx.Pipe()
        self._procs = []
        for rank in range(world_size):
            p = ctx.Process(target=_worker, args=(rank, args, child if rank == 0 else None), daemon=True)
            p.start()
            self._procs.append(p)
        self.timeout = timeout
        self._expect("ready")
        self.last: list[RequestStats] | None = None

    def _expect(self, what: str):
        deadline = time.monotonic() + self.timeout
        while not self._conn.poll(0.1):
            dead = [p for p in self._procs if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                self.close()
                why = (
                    f"rank exited with code {dead[0].exitcode}" if dead else f"no answer in {self.timeout} s"
                )
                raise RuntimeError(f"graph-parallel worker failed ({why}) while waiting for {what}")
        status, payload = self._conn.recv()
        if status == "error":
            self.close()
            raise RuntimeError(f"graph-parallel worker failed:\n{payload}")
        return payload

    def infer(self, request: Request, method: Method, model: str | None = None) -> Tensor:
        """(B, C) logits; the request is checked here first, so a bad one never reaches the ranks."""
        name = model or self.models[0]
        if name not in self.models:
            raise ValueError(f"model must be one of {self.models} (loaded at start), but got {name!r}")
        validate_request(request, num_nodes=self.num_nodes, feature_dim=self.feature_dim)
        self._conn.send((request, method, name))
        out, stats = self._expect("an answer")
        self.last = stats
        return out

    def close(self) -> None:
        if self._procs and all(p.is_alive() for p in self._procs):
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        self._procs = []

    def __enter__(self) -> ParallelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
