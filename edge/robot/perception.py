"""Person detection on camera frames with an ONNX model run by onnxruntime (no torch on the robot).

The model is a small fully convolutional network (trained by `tether robot train-perception`,
see `tether.edge.robot.train`) that maps an RGB frame resized to `input_resolution` pixels wide
(3:4 high) to a person-probability map at 1/4 of that size; detections are its connected
components. Cost grows with the square of `input_resolution`; small people vanish below it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from tether.settings import settings

__all__ = [
    "Detection",
    "ModelMissingError",
    "PersonDetector",
    "STRIDE",
    "bearing_recall",
    "box_recall",
    "default_model_path",
    "resize_nearest",
]

STRIDE = 4  # output cells per input pixel, each way


class ModelMissingError(FileNotFoundError):
    """No trained perception model where the settings point. Recoverable: train one."""


def default_model_path() -> Path:
    return settings().artefact_dir("robot") / "perception.onnx"


@dataclass(frozen=True)
class Detection:
    """A person: box in the original frame's pixels (x0, y0, x1, y1), score, bearing (rad, left +)."""

    box: tuple[float, float, float, float]
    score: float
    bearing: float


def resize_nearest(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) -> (height, width, C) by nearest-neighbour sampling (cheap, and what the model saw in training)."""
    h, w = img.shape[:2]
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.int64)
    return img[rows[:, None], cols[None, :]]


def input_size(resolution: int) -> tuple[int, int]:
    """(width, height) of the network input for `input_resolution`, multiples of the stride."""
    w = max(STRIDE * 4, int(round(resolution / STRIDE)) * STRIDE)
    h = max(STRIDE * 3, int(round(w * 3 / 4 / STRIDE)) * STRIDE)
    return w, h


def to_tensor(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return (frames.astype(np.float32).transpose(0, 3, 1, 2) / 127.5) - 1.0


class PersonDetector:
    """Loads the ONNX model once; `detect(rgb)` runs it at the current `input_resolution`."""

    def __init__(
        self,
        model_path: Path | None = None,
        input_resolution: int = 128,
        threshold: float = 0.5,
        fovy_deg: float = 60.0,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(model_path) if model_path else default_model_path()
        if not self.path.is_file():
            raise ModelMissingError(
                f"no perception model at {self.path}; train one with `tether robot train-perception` "
                "(it needs the cloud extra for torch: pip install -e '.[cloud]')"
            )
        opts = ort.SessionOptions()
        # One thread: the node's CPU use is then what its cgroup quota says, not what the machine has.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        meta = self.path.with_suffix(".json")
        self.meta = json.loads(meta.read_text()) if meta.is_file() else {}
        self.input_resolution = input_resolution
        self.threshold = threshold
        self.fovy = math.radians(fovy_deg)

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w) person probability at stride 4 of the network input."""
        w, h = input_size(self.input_resolution)
        x = to_tensor(resize_nearest(rgb, w, h)[None])
        (out,) = self.session.run(None, {self.input_name: x})
        return out[0, 0]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """People in an (H, W, 3) uint8 frame."""
        prob = self.probabilities(rgb)
        return boxes_from_probabilities(prob, rgb.shape[1], rgb.shape[0], self.threshold, self.fovy)


def boxes_from_probabilities(
    prob: np.ndarray, width: int, height: int, threshold: float, fovy: float
) -> list[Detection]:
    """Connected components of prob > threshold, as boxes in a width x height frame."""
    labels, n = ndimage.label(prob > threshold)
    out = []
    sy, sx = height / prob.shape[0], width / prob.shape[1]
    fx = (height / 2) / math.tan(fovy / 2)  # focal length in pixels (square pixels)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        rs, cs = sl
        score = float(prob[sl][labels[sl] == i].max())
        x0, x1 = cs.start * sx, cs.stop * sx
        y0, y1 = rs.start * sy, rs.stop * sy
        bearing = math.atan2(width / 2 - (x0 + x1) / 2, fx)
        out.append(Detection(box=(x0, y0, x1, y1), score=score, bearing=bearing))
    return out


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_recall(
    detections: list[Detection], truth: list[tuple[float, float, float, float]]
) -> tuple[int, int, int]:
    """(people found, people, detections that match someone): a person is found when a detection box
    holds its box's centre or overlaps it with IoU >= 0.3 (merged neighbours count for both)."""

    def hit(d: Detection, t: tuple) -> bool:
        cx, cy = (t[0] + t[2]) / 2, (t[1] + t[3]) / 2
        x0, y0, x1, y1 = d.box
        return (x0 <= cx <= x1 and y0 <= cy <= y1) or _iou(d.box, t) >= 0.3

    found = sum(1 for t in truth if any(hit(d, t) for d in detections))
    matched = sum(1 for d in detections if any(hit(d, t) for t in truth))
    return found, len(truth), matched


def bearing_recall(
    detected: list[float], truth: list[float], tolerance: float = math.radians(6)
) -> tuple[int, int]:
    """(people found, people) matching bearings (rad) within `tolerance`: the live check against the
    simulator's ground truth, where boxes are not published."""
    found = sum(1 for t in truth if any(abs(t - d) <= tolerance for d in detected))
    return found, len(truth)
