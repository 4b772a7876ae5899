"""The robot's base: a differential drive and its wheel odometry with noise.

The body moves on planar joints driven by velocity servos; the non-holonomic constraint of a
differential drive is imposed by commanding velocity only along the heading (the lateral servo
holds zero, so only a contact can push the robot sideways). Odometry integrates the two wheel
encoders the way a real base driver does, with per-wheel slip noise and a wheel-radius error,
so it drifts from the truth and localization has something to correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OdometryNoise", "RobotSpec", "WheelOdometry", "clip_command", "wrap_angle"]


@dataclass(frozen=True)
class RobotSpec:
    """Geometry and limits of the robot (SI units). The LiDAR and camera heights are above the floor."""

    radius: float = 0.22
    height: float = 0.24
    mass: float = 20.0
    wheel_radius: float = 0.05
    wheel_base: float = 0.36
    max_speed: float = 0.8  # m/s
    max_yaw_rate: float = 1.8  # rad/s
    lidar_height: float = 0.32
    camera_height: float = 0.5
    camera_fovy_deg: float = 60.0


@dataclass(frozen=True)
class OdometryNoise:
    """slip: std of the relative per-wheel speed error per tick; radius_error: left-wheel radius bias."""

    slip: float = 0.02
    radius_error: float = 0.005
    seed: int = 0


def wrap_angle(a: float) -> float:
    """Angle in [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def clip_command(v: float, w: float, spec: RobotSpec) -> tuple[float, float]:
    """A Twist (v m/s forward, w rad/s yaw) inside the robot's limits; NaN is treated as stop."""
    if not (math.isfinite(v) and math.isfinite(w)):
        return 0.0, 0.0
    return (max(-spec.max_speed, min(spec.max_speed, v)), max(-spec.max_yaw_rate, min(spec.max_yaw_rate, w)))


class WheelOdometry:
    """Dead reckoning from noisy wheel speeds, starting at the robot's true start pose (odom frame = start)."""

    def __init__(self, spec: RobotSpec, noise: OdometryNoise) -> None:
        self.spec = spec
        self.noise = noise
        self.rng = np.random.default_rng(noise.seed)
        self.x = 0.0
        self.y = 0.0
        self.yaw = 0.0
        self.v = 0.0
        self.w = 0.0

    def update(self, v_true: float, w_true: float, dt: float) -> None:
        """Integrate one tick: true body speeds -> wheel speeds -> noisy encoders -> pose (midpoint rule)."""
        s = self.spec
        left = (v_true - w_true * s.wheel_base / 2) / s.wheel_radius  # rad/s
        right = (v_true + w_true * s.wheel_base / 2) / s.wheel_radius
        if self.noise.slip > 0:
            left *= 1.0 + self.rng.normal(0.0, self.noise.slip)
            right *= 1.0 + self.rng.normal(0.0, self.noise.slip)
        r_left = s.wheel_radius * (1.0 + self.noise.radius_error)  # the driver's belief is off by this much
        v = (right * s.wheel_radius + left * r_left) / 2
        w = (right * s.wheel_radius - left * r_left) / s.wheel_base
        mid = self.yaw + w * dt / 2
        self.x += v * dt * math.cos(mid)
        self.y += v * dt * math.sin(mid)
        self.yaw = wrap_angle(self.yaw + w * dt)
        self.v, self.w = v, w
