"""The precomputed-embedding store: every existing node's features h^0 and layer outputs h^1..h^(L-1),
memory-mapped from disk and partitioned by node-id range (OMEGA, arXiv 2501.08547, section 4).

Layout of a store folder: `meta.json` (node count, partition bounds, layer widths, model name)
and one `layer{l}.part{p}.npy` float32 file per layer and partition, rows = the partition's nodes
in id order. A rank of the graph-parallel server reads only its own partitions' pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["EmbeddingStore", "StoreError", "partition_bounds", "write_store"]


class StoreError(RuntimeError):
    """A store folder is missing or does not match the model or graph; rebuild it with `tether omega precompute`."""


def partition_bounds(num_nodes: int, num_partitions: int) -> Tensor:
    """(P + 1,) int64: partition p holds node ids [bounds[p], bounds[p+1])."""
    if not 1 <= num_partitions <= max(1, num_nodes):
        raise ValueError(
            f"1 <= num_partitions <= num_nodes must hold, but got {num_partitions} for {num_nodes}"
        )
    return torch.tensor(
        [p * num_nodes // num_partitions for p in range(num_partitions + 1)], dtype=torch.long
    )


def write_store(
    path: Path, layers: list[Tensor], *, num_partitions: int, model_name: str, graph_name: str
) -> None:
    """Write h^0..h^(L-1), each (N, F_l), as a partitioned store under `path`."""
    path.mkdir(parents=True, exist_ok=True)
    n = int(layers[0].shape[0])
    bounds = partition_bounds(n, num_partitions)
    for layer, h in enumerate(layers):
        if int(h.shape[0]) != n:
            raise ValueError(f"every layer must have {n} rows, but layer {layer} has {int(h.shape[0])}")
        arr = h.detach().float().contiguous().numpy()
        for p in range(num_partitions):
            np.save(path / f"layer{layer}.part{p}.npy", arr[int(bounds[p]) : int(bounds[p + 1])])
    meta = {
        "num_nodes": n,
        "bounds": bounds.tolist(),
        "dims": [int(h.shape[1]) for h in layers],
        "model": model_name,
        "graph": graph_name,
    }
    # meta last: a folder without it is an interrupted write, never read as a store
    (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


@dataclass
class EmbeddingStore:
    """Read side of a store: `gather(layer, ids)` returns rows of h^layer for existing node ids."""

    path: Path
    num_nodes: int
    bounds: Tensor  # (P + 1,)
    dims: list[int]
    model_name: str
    graph_name: str
    _parts: list[list[Tensor | None]]  # [layer][partition] tensors over memory-mapped files

    @classmethod
    def open(cls, path: Path, partitions: list[int] | None = None) -> EmbeddingStore:
        """Map the store at `path`; `partitions` limits the mapped files to those a rank owns."""
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise StoreError(
                f"no embedding store at {path} (missing meta.json); run `tether omega precompute`"
            )
        meta = json.loads(meta_path.read_text())
        bounds = torch.tensor(meta["bounds"], dtype=torch.long)
        num_parts = len(bounds) - 1
        wanted = set(range(num_parts) if partitions is None else partitions)
        parts: list[list[Tensor | None]] = []
        for layer in range(len(meta["dims"])):
            row = []
            for p in range(num_parts):
                f = path / f"layer{layer}.part{p}.npy"
                if p in wanted and not f.is_file():
                    raise StoreError(f"{f} is missing from the store; run `tether omega precompute` again")
                # copy-on-write mapping: torch may view it without a copy, and nothing ever reaches the file
                row.append(torch.from_numpy(np.load(f, mmap_mode="c")) if p in wanted else None)
            parts.append(row)
        return cls(path, meta["num_nodes"], bounds, meta["dims"], meta["model"], meta["graph"], parts)

    @property
    def num_layers(self) -> int:
        """Stored layers: h^0 (features) .. h^(L-1)."""
        return len(self.dims)

    @property
    def num_partitions(self) -> int:
        return int(self.bounds.numel() - 1)

    def gather(self, layer: int, ids: Tensor, out: Tensor | None = None) -> Tensor:
        """(len(ids), F_layer) float32 rows of h^layer, written into `out` when given.

        ids must be existing nodes in mapped partitions; ascending ids (the server's) are cut into
        per-partition runs without masks.
        """
        if out is None:
            out = torch.empty(int(ids.numel()), self.dims[layer])
        if ids.numel() == 0:
            return out
        if bool((ids[1:] < ids[:-1]).any()):
            order = torch.argsort(ids)
            out[order] = self.gather(layer, ids[order])
            return out
        if int(ids[0]) < 0 or int(ids[-1]) >= self.num_nodes:
            raise StoreError(
                f"store rows are node ids 0..{self.num_nodes - 1}, but got ids in [{int(ids[0])}, {int(ids[-1])}]"
            )
        cuts = torch.searchsorted(ids, self.bounds).tolist()  # ids[cuts[p]:cuts[p+1]] lie in partition p
        for p in range(self.num_partitions):
            lo, hi = cuts[p], cuts[p + 1]
            if hi == lo:
                continue
            part = self._parts[layer][p]
            if part is None:
                raise StoreError(
                    f"node ids of partition {p} were asked of a store that maps {self._mapped()}"
                )
            torch.index_select(part, 0, ids[lo:hi] - int(self.bounds[p]), out=out[lo:hi])
        return out

    def _mapped(self) -> list[int]:
        return [p for p, mm in enumerate(self._parts[0]) if mm is not None]
