"""Planar rigid transforms: poses (x, y, yaw) composed, inverted and applied to points (SI units)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["compose", "invert", "transform_points", "wrap"]


def wrap(a: float | np.ndarray) -> float | np.ndarray:
    """Angle(s) in [-pi, pi)."""
    return (
        (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi
        if isinstance(a, np.ndarray)
        else ((a + math.pi) % (2 * math.pi) - math.pi)
    )


def compose(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    """a ∘ b: pose b (given in a's frame) expressed in a's parent frame."""
    ax, ay, ath = a
    bx, by, bth = b
    c, s = math.cos(ath), math.sin(ath)
    return ax + c * bx - s * by, ay + s * bx + c * by, float(wrap(ath + bth))


def invert(a: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, th = a
    c, s = math.cos(th), math.sin(th)
    return -(c * x + s * y), -(-s * x + c * y), float(wrap(-th))


def transform_points(pose: tuple[float, float, float], pts: np.ndarray) -> np.ndarray:
    """(N, 2) points in the pose's frame -> (N, 2) in its parent frame."""
    x, y, th = pose
    c, s = math.cos(th), math.sin(th)
    out = np.empty_like(pts, dtype=np.float64)
    out[:, 0] = x + c * pts[:, 0] - s * pts[:, 1]
    out[:, 1] = y + s * pts[:, 0] + c * pts[:, 1]
    return out
