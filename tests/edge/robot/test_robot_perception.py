"""Perception: the torch -> ONNX training pipeline, and the trained model against the simulator's ground truth."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tether.edge.robot.perception import PersonDetector, default_model_path, input_size
from tether.edge.robot.perception_data import person_boxes, render_frames
from tether.edge.robot.train import DEFAULT_RESOLUTION, evaluate


def test_frames_are_labelled_by_segmentation():
    frames = render_frames(6, seed=3)
    assert frames.rgb.shape == (6, 120, 160, 3) and frames.people.shape == (6, 120, 160)
    boxes = [person_boxes(p) for p in frames.people]
    assert sum(len(b) for b in boxes) >= 3  # people are placed in front of the camera
    for bs in boxes:
        for x0, y0, x1, y1 in bs:
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120


def test_training_pipeline_exports_an_onnx_model_that_runs_at_any_resolution(tmp_path):
    pytest.importorskip("torch")
    from tether.edge.robot.train import train_perception

    out = tmp_path / "perception.onnx"
    report = train_perception(out, frames=32, epochs=1, min_recall=0.0, log=lambda *_: None)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert {r["resolution"] for r in report["by_resolution"]} >= {64, DEFAULT_RESOLUTION, 224}
    det = PersonDetector(out, input_resolution=64)
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    for res in (64, 160, 256):
        det.input_resolution = res
        w, h = input_size(res)
        assert det.probabilities(frame).shape == (h // 4, w // 4)


@pytest.fixture(scope="module")
def trained():
    path = default_model_path()
    if not path.is_file():
        pytest.skip(
            f"no trained perception model at {path}: run `tether robot train-perception` (make setup does)"
        )
    return path


def test_trained_model_finds_people_against_ground_truth(trained):
    frames = render_frames(40, seed=4242)  # frames the model never saw
    result = evaluate(trained, frames, DEFAULT_RESOLUTION)
    assert result["people"] >= 40
    assert result["recall"] >= 0.8, result
    assert result["precision"] >= 0.5, result


@pytest.mark.serial
def test_perception_cost_grows_with_input_resolution(trained):
    frame = render_frames(1, seed=7).rgb[0]
    det = PersonDetector(trained)

    def cost(res: int) -> float:
        det.input_resolution = res
        det.detect(frame)
        t0 = time.process_time()
        for _ in range(10):
            det.detect(frame)
        return (time.process_time() - t0) / 10

    small, large = cost(64), cost(256)
    assert large > 4 * small, (small, large)  # 16x the pixels; at least 4x the CPU
