"""Linear layers on weights prepacked for oneDNN's float32 GEMM, for the engine's inference path.

An engine step multiplies 1-64 rows by every weight matrix of the model. At those row
counts MKL's sgemm on the plain (out, in) weight re-blocks the matrix on every call;
oneDNN's inner product on a weight reordered once into its own blocked layout does not
(the reorder is what PyTorch's inductor does for frozen CPU models). Measured on the
2-core build machine, one thread, the 120 GEMMs of SmolLM2-135M per step: 62 -> 45 ms at 1
row, 94 -> 49 ms at 8, 128 -> 70 ms at 16. Results agree with `F.linear` to float32
rounding (~1e-5 relative: the summation order differs).

`linear(x, weight)` uses the packed copy only inside `enabled()` (the engine's step turns it
on), without autograd, for float32 CPU input; everywhere else it is `F.linear`. The packed
copy is made on first use and made again when the parameter changes (its version counter
or storage), so weights trained or loaded later are never served stale. It costs a second
copy of each weight (~590 MB for SmolLM2-135M in float32).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = ["available", "enabled", "linear"]

_state = threading.local()  # .on: packed GEMMs in this thread's current step
# id(weight) -> (weakref to it, version, data_ptr, packed copy); an entry goes when its weight does.
_packed: dict[int, tuple[weakref.ref, int, int, torch.Tensor]] = {}


def available() -> bool:
    """Whether this torch build has oneDNN's packed linear (CPU builds with MKLDNN do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Within the block, `linear` in this thread uses packed weights (when `on` and available)."""
    before = getattr(_state, "on", False)
    _state.on = on and available()
    try:
        yield
    finally:
        _state.on = before


def _pack(weight: torch.Tensor) -> torch.Tensor:
    key = id(weight)
    hit = _packed.get(key)
    version, ptr = weight._version, weight.data_ptr()
    if hit is not None and hit[0]() is weight and hit[1] == version and hit[2] == ptr:
        return hit[3]
    with torch.inference_mode(False), torch.no_grad():
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
    ref = weakref.ref(weight, lambda _r, key=key: _packed.pop(key, None))
    _packed[key] = (ref, version, ptr, packed)
    return packed


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., in) @ weight (out, in)^T -> (..., out), no bias; packed inside `enabled()`."""
    if (
        not getattr(_state, "on", False)
        or torch.is_grad_enabled()
        or x.dtype is not torch.float32
        or weight.dtype is not torch.float32
        or x.device.type != "cpu"
        or x.numel() == 0
    ):
        return F.linear(x, weight)
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), _pack(weight), None, "none", [], "")
