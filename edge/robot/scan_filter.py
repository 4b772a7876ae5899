"""LiDAR scan filtering: range clipping, a median filter over neighbouring beams, and the removal of
veiling points (the mixed returns at an object's edge), as ROS's laser_filters chain does.

Cost grows with `window` (the median's width in beams): O(beams x window) per scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["ScanFilter", "ScanFilterConfig"]


@dataclass(frozen=True)
class ScanFilterConfig:
    window: int = 5  # beams in the median filter, odd
    range_min: float = 0.15  # m; shorter returns are the robot itself
    range_max: float = 10.0  # m; longer ones are too noisy to trust
    veiling_angle_deg: float = 8.0  # a pair seen at a shallower angle than this is a veiling edge

    def __post_init__(self) -> None:
        if not (1 <= self.window <= 99 and self.window % 2 == 1):
            raise ValueError(f"window must be odd and 1 <= window <= 99, but got {self.window}")
        if not 0 <= self.range_min < self.range_max:
            raise ValueError(
                f"0 <= range_min < range_max must hold, but got ({self.range_min}, {self.range_max})"
            )


class ScanFilter:
    def __init__(self, config: ScanFilterConfig) -> None:
        self.config = config

    def filter(self, ranges: np.ndarray, angle_increment: float) -> np.ndarray:
        """(N,) ranges -> (N,) filtered float32; rejected beams are +inf (no return)."""
        c = self.config
        r = np.asarray(ranges, dtype=np.float64).copy()
        r[~np.isfinite(r) | (r < c.range_min) | (r > c.range_max)] = np.inf
        if c.window > 1:
            half = c.window // 2
            padded = np.concatenate([r[-half:], r, r[:half]])  # the scan wraps around (360 degrees)
            windows = sliding_window_view(padded, c.window)  # (N, window)
            med = np.median(windows, axis=1)
            # Keep a beam's own value unless it is an outlier against its neighbourhood.
            finite = np.isfinite(r) & np.isfinite(med)
            with np.errstate(invalid="ignore"):
                outlier = finite & (np.abs(r - med) > 0.1 + 0.05 * med)
            r[outlier] = med[outlier]
        # Veiling: neighbours a and b with the angle between beam a and the segment a->b too shallow.
        nxt = np.roll(r, -1)
        both = np.isfinite(r) & np.isfinite(nxt)
        sin_inc, cos_inc = math.sin(angle_increment), math.cos(angle_increment)
        with np.errstate(invalid="ignore", divide="ignore"):
            seen = np.arctan2(nxt * sin_inc, r - nxt * cos_inc)  # angle at a, between the beam and a->b
        shallow = both & (np.abs(np.sin(seen)) < math.sin(math.radians(c.veiling_angle_deg)))
        r[shallow] = np.inf
        r[np.roll(shallow, 1)] = np.inf
        return r.astype(np.float32)
