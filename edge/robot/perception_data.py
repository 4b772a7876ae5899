"""Labelled camera frames from the simulator: the robot at random free poses, people placed in front of it.

MuJoCo's segmentation rendering labels every pixel with the person it shows, so the labels are
exact, including occlusion by walls, furniture and other people. Used to train the perception
model and to measure its recall against the simulator's ground truth (no torch needed here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tether.edge.sim.camera import CameraSpec, render_once
from tether.edge.sim.drive import RobotSpec
from tether.edge.sim.model import PARKED_Z, build_model
from tether.edge.sim.world import load_world

__all__ = ["LabelledFrames", "person_boxes", "render_frames"]

MIN_PIXELS = 30  # a person showing fewer pixels (of 160x120) is not expected to be detected


@dataclass
class LabelledFrames:
    """rgb: (N, H, W, 3) uint8; people: (N, H, W) int16, the person slot per pixel or -1."""

    rgb: np.ndarray
    people: np.ndarray


def person_boxes(people: np.ndarray, min_pixels: int = MIN_PIXELS) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1) in pixels of each person with at least `min_pixels` visible pixels."""
    out = []
    for slot in np.unique(people):
        if slot < 0:
            continue
        rows, cols = np.nonzero(people == slot)
        if rows.size >= min_pixels:
            out.append((float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)))
    return out


def render_frames(
    count: int, seed: int = 0, world: str = "office", max_people: int = 7, camera: CameraSpec | None = None
) -> LabelledFrames:
    """`count` labelled frames; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    w = load_world(world)
    spec = RobotSpec()
    model, index = build_model(w, spec, max_people)
    import mujoco

    data = mujoco.MjData(model)
    cam = camera or CameraSpec()
    render, close = render_once(model, index, cam)
    half_fov = math.atan(math.tan(math.radians(spec.camera_fovy_deg) / 2) * cam.width / cam.height)
    rgb = np.zeros((count, cam.height, cam.width, 3), dtype=np.uint8)
    people = np.zeros((count, cam.height, cam.width), dtype=np.int16)
    try:
        for i in range(count):
            while True:
                x, y = rng.uniform(0.4, w.size[0] - 0.4), rng.uniform(0.4, w.size[1] - 0.4)
                if w.is_free(x, y, 0.3):
                    break
            # Half of the frames look along the corridor, where people are seen from afar.
            yaw = (
                rng.choice([0.0, math.pi]) + rng.normal(0, 0.3)
                if rng.random() < 0.5
                else rng.uniform(-math.pi, math.pi)
            )
            data.qpos[[index.qpos_x, index.qpos_y, index.qpos_yaw]] = (x, y, yaw)
            data.mocap_pos[:] = (0.0, 0.0, PARKED_Z)
            n = int(rng.integers(0, max_people + 1))
            for slot in range(n):
                for _ in range(30):
                    if rng.random() < 0.8:  # in front of the camera
                        d, b = rng.uniform(0.8, 9.0), rng.uniform(-half_fov, half_fov)
                        px, py = x + d * math.cos(yaw + b), y + d * math.sin(yaw + b)
                    else:
                        px, py = rng.uniform(0.3, w.size[0] - 0.3), rng.uniform(0.3, w.size[1] - 0.3)
                    if w.is_free(px, py, 0.25) and math.hypot(px - x, py - y) > 0.6:
                        data.mocap_pos[index.person_mocap[slot]] = (px, py, 0.0)
                        break
            rgb[i], people[i] = render(data.qpos, data.mocap_pos, True)
    finally:
        close()
    return LabelledFrames(rgb=rgb, people=people)
