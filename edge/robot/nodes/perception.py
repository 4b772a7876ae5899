"""The perception node: people in `camera/image_raw` by an ONNX model -> `detections` (robot frame).

Non-core, costly, and what ConfigBot's objective rewards (object detection, 1-5 Hz on a real
robot). Parameter `input_resolution` sets the cost per frame. Against the simulator's ground
truth (`sim/people_visible`) it reports its live recall as telemetry `perception.recall`.
Without a trained model it trains a tiny one when torch is installed, else it says what to run.
"""

from __future__ import annotations

import collections
import math
import time

import numpy as np

from tether.bus import Node, qos_profile_sensor_data
from tether.bus.messages import get_type
from tether.edge import rosmsg
from tether.edge.robot.nodes.common import on_parameters
from tether.edge.robot.perception import ModelMissingError, PersonDetector, bearing_recall, default_model_path

__all__ = ["PerceptionNode", "main"]

PoseArray = get_type("geometry_msgs/msg/PoseArray")


def _detector(resolution: int, log) -> PersonDetector:
    try:
        return PersonDetector(input_resolution=resolution)
    except ModelMissingError as exc:
        try:
            from tether.edge.robot.train import train_perception
        except ImportError:
            raise ModelMissingError(
                f"{exc}; torch is not installed here, so no tiny model can be trained"
            ) from None
        log(
            f"{exc}. Training a tiny model now (about a minute); `tether robot train-perception` trains the full one."
        )
        train_perception(default_model_path(), frames=300, epochs=10, log=log)
        return PersonDetector(input_resolution=resolution)


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception", **kwargs)
        res = self.declare_parameter(
            "input_resolution", 128, description="network input width, px (height 3/4)", min=32, max=320
        )
        thr = self.declare_parameter(
            "score_threshold", 0.5, description="person probability for a detection", min=0.05, max=0.95
        )
        self.detector = _detector(int(res.value), self.get_logger().info)
        self.detector.threshold = float(thr.value)
        self.pub = self.create_publisher(PoseArray, "detections", 10)
        self.create_subscription(
            get_type("sensor_msgs/msg/Image"), "camera/image_raw", self._on_image, qos_profile_sensor_data
        )
        self.create_subscription(PoseArray, "sim/people_visible", self._on_truth, 10)
        self._truth: collections.deque = collections.deque(maxlen=20)  # (stamp, bearings)
        self._pending: collections.deque = collections.deque(maxlen=20)  # (stamp, detected bearings)
        self._found = self._total = 0
        self._recent: collections.deque = collections.deque(maxlen=50)  # (found, total) per frame
        self._ms = 0.0
        self.telemetry.add_source(self._metrics)
        on_parameters(self, self._apply)

    def _metrics(self) -> dict[str, float]:
        found = sum(f for f, _ in self._recent)
        total = sum(t for _, t in self._recent)
        return {
            "perception.infer_ms": self._ms,
            "perception.input_resolution": float(self.detector.input_resolution),
            "perception.recall": found / total if total else float("nan"),
            "perception.recall_total": self._found / self._total if self._total else float("nan"),
        }

    def _apply(self, changes: dict) -> str | None:
        if "input_resolution" in changes:
            self.detector.input_resolution = int(changes["input_resolution"])
        if "score_threshold" in changes:
            self.detector.threshold = float(changes["score_threshold"])
        return None

    def _on_image(self, msg) -> None:
        t0 = time.perf_counter()
        stamp, rgb = rosmsg.image_from_msg(msg)
        dets = self.detector.detect(rgb)
        # Place each person on the floor: its box's bottom row seen from the camera's height.
        h, w = rgb.shape[:2]
        f = (h / 2) / math.tan(self.detector.fovy / 2)
        pts = []
        for d in dets:
            below = (d.box[3] - h / 2) / f  # tan of the angle below the horizon to the feet
            dist = 0.5 / below if below > 0.02 else 10.0
            pts.append((dist * math.cos(d.bearing), dist * math.sin(d.bearing)))
        self.pub.publish(rosmsg.pose_array_msg(stamp, "base_link", np.array(pts).reshape(-1, 2)))
        self._pending.append((stamp, [d.bearing for d in dets]))
        self._score()
        self._ms = 0.9 * self._ms + 0.1 * (time.perf_counter() - t0) * 1e3

    def _on_truth(self, msg) -> None:
        pts = rosmsg.pose_array_from_msg(msg)
        self._truth.append((rosmsg.stamp_seconds(msg.header.stamp), [math.atan2(y, x) for x, y in pts]))
        self._score()

    def _score(self) -> None:
        """Match detections to the ground truth of the same frame (same stamp)."""
        truth = dict(self._truth)
        while self._pending and self._pending[0][0] in truth:
            stamp, bearings = self._pending.popleft()
            found, total = bearing_recall(bearings, truth[stamp])
            self._found += found
            self._total += total
            self._recent.append((found, total))


def main(args=None) -> None:
    from tether.bus import run_node

    raise SystemExit(run_node(PerceptionNode, args))
