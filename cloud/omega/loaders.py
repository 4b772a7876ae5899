"""Reading a user's graph from files: an edge list, node features and labels (OMEGA, arXiv 2501.08547,
serves any node-classification graph; the generated ones are only the default).

Formats, chosen by extension: `.npy` (edges (2, E) or (E, 2) integers; features (N, F); labels (N,))
or text (`.txt`, `.csv`, `.tsv`, `.el`): one edge "u v" per line, one feature row per line, one label
per line; separators are commas, tabs or spaces; `#` starts a comment. Edges are made undirected,
self loops and duplicates dropped. Errors name the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from tether.cloud.omega.graphs import Graph

__all__ = ["GraphFileError", "load_graph_files"]

_SEP = re.compile(r"[,\s]+")


class GraphFileError(ValueError):
    """A graph file breaks its format; the message names the file, the line, the rule and the fix."""


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise GraphFileError(f"{path}: no such file")
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if body:
            out.append((lineno, [t for t in _SEP.split(body) if t]))
    return out


def _read_edges(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim != 2 or 2 not in arr.shape or not np.issubdtype(arr.dtype, np.integer):
            raise GraphFileError(
                f"{path}: an edge array must be integer (2, E) or (E, 2), but got {arr.dtype} {arr.shape}"
            )
        return arr if arr.shape[0] == 2 else arr.T  # a 2 x 2 array reads as (2, E)
    edges = []
    for lineno, tokens in _rows(path):
        if len(tokens) < 2 or not all(re.fullmatch(r"\d+", t) for t in tokens[:2]):
            raise GraphFileError(
                f"{path}:{lineno}: an edge line must start with two non-negative integer node ids, but got "
                f"{' '.join(tokens)!r}; write 'u v'"
            )
        edges.append((int(tokens[0]), int(tokens[1])))
    if not edges:
        raise GraphFileError(f"{path}: the edge list is empty; write one 'u v' line per edge")
    return np.asarray(edges, dtype=np.int64).T


def _read_features(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise GraphFileError(
                f"{path}: features must be a numeric (N, F) array, but got {arr.dtype} {arr.shape}"
            )
        return arr.astype(np.float32)
    rows, width = [], None
    for lineno, tokens in _rows(path):
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise GraphFileError(
                f"{path}:{lineno}: a feature row must be numbers, but got {' '.join(tokens)!r}"
            ) from None
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise GraphFileError(
                f"{path}:{lineno}: every feature row must have the first row's {width} values, but this one has "
                f"{len(values)}"
            )
        rows.append(values)
    return np.asarray(rows, dtype=np.float32)


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise GraphFileError(
                f"{path}: labels must be an integer (N,) array, but got {arr.dtype} {arr.shape}"
            )
        return arr.astype(np.int64)
    labels = []
    for lineno, tokens in _rows(path):
        if len(tokens) != 1 or not re.fullmatch(r"\d+", tokens[0]):
            raise GraphFileError(
                f"{path}:{lineno}: a label line must hold one non-negative integer class, but got {' '.join(tokens)!r}"
            )
        labels.append(int(tokens[0]))
    return np.asarray(labels, dtype=np.int64)


def load_graph_files(edges: Path, features: Path, labels: Path) -> Graph:
    """The graph in the three files; node ids are row numbers of the features (0..N-1)."""
    x = _read_features(Path(features))
    y = _read_labels(Path(labels))
    n = len(x)
    if len(y) != n:
        raise GraphFileError(
            f"{labels}: there must be one label per feature row ({n} in {features}), but there are {len(y)}"
        )
    ei = _read_edges(Path(edges))
    bad = (ei < 0) | (ei >= n)
    if bad.any():
        j = int(np.argwhere(bad.any(axis=0))[0, 0])
        raise GraphFileError(
            f"{edges}: edge {j} ({int(ei[0, j])}, {int(ei[1, j])}) names a node outside 0..{n - 1} "
            f"(the rows of {features}); node ids must be feature row numbers"
        )
    a, b = ei[0].astype(np.int64), ei[1].astype(np.int64)
    keep = a != b
    key = np.unique(np.concatenate([a[keep] * n + b[keep], b[keep] * n + a[keep]]))
    edge_index = torch.from_numpy(np.stack([key // n, key % n]))
    num_classes = int(y.max()) + 1 if n else 0
    if num_classes < 2:
        raise GraphFileError(
            f"{labels}: node classification needs at least 2 classes, but the labels hold {num_classes}"
        )
    return Graph(edge_index, torch.from_numpy(x), torch.from_numpy(y), num_classes)
