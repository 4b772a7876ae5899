"""Training the perception model on simulator frames (torch -> ONNX): `tether robot train-perception`.

A fully convolutional person segmenter (stride 4) trained with binary cross-entropy on
MuJoCo-labelled frames at several input sizes, so one model serves every `input_resolution`.
Needs torch and onnx (the cloud extra); the robot itself only runs the exported ONNX file.
The model is accepted only if people's recall at the default resolution is at least 0.8 on
frames it never saw; the figures go to `perception.json` beside the model.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from tether.edge.robot.perception import (
    STRIDE,
    PersonDetector,
    box_recall,
    default_model_path,
    input_size,
    resize_nearest,
    to_tensor,
)
from tether.edge.robot.perception_data import LabelledFrames, person_boxes, render_frames

__all__ = ["DEFAULT_RESOLUTION", "evaluate", "train_perception"]

DEFAULT_RESOLUTION = 128  # the perception node's default input_resolution
TRAIN_WIDTHS = (64, 96, 128, 160, 192)


def _build_model(width: int = 24):
    import torch.nn as nn

    c = width
    return nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1),
        nn.ReLU(),  # (c, H/2, W/2)
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
        nn.ReLU(),  # (2c, H/4, W/4)
        nn.Conv2d(2 * c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2),
        nn.ReLU(),  # wider context: a whole body
        nn.Conv2d(2 * c, 2 * c, 3, padding=4, dilation=4),
        nn.ReLU(),
        nn.Conv2d(2 * c, 1, 1),  # (1, H/4, W/4) logits
    )


def _targets(people: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 1, h/4, w/4) float32: 1 where at least a quarter of the cell shows a person."""
    mask = (people >= 0).astype(np.float32)[..., None]  # (N, H, W, 1)
    small = np.stack([resize_nearest(m, width, height)[..., 0] for m in mask])  # (N, h, w)
    n, h, w = small.shape
    pooled = small.reshape(n, h // STRIDE, STRIDE, w // STRIDE, STRIDE).mean(axis=(2, 4))
    return (pooled >= 0.25).astype(np.float32)[:, None]


def evaluate(model_path: Path, frames: LabelledFrames, resolution: int) -> dict:
    """Recall and precision of people (>= 30 visible pixels) and mean inference time at `resolution`."""
    det = PersonDetector(model_path, input_resolution=resolution)
    found = total = matched = ndet = 0
    times = []
    for rgb, people in zip(frames.rgb, frames.people):
        t0 = time.perf_counter()
        dets = det.detect(rgb)
        times.append(time.perf_counter() - t0)
        f, t, m = box_recall(dets, person_boxes(people))
        found, total, matched, ndet = found + f, total + t, matched + m, ndet + len(dets)
    return {
        "resolution": resolution,
        "recall": found / total if total else 1.0,
        "precision": matched / ndet if ndet else 1.0,
        "people": total,
        "infer_ms": 1e3 * float(np.median(times)),
    }


def train_perception(
    out: Path | None = None,
    *,
    frames: int = 900,
    epochs: int = 14,
    seed: int = 0,
    min_recall: float = 0.8,
    log=print,
) -> dict:
    """Render, train, export to ONNX, evaluate; returns the report (also written beside the model).

    Raises RuntimeError when recall at the default resolution is below `min_recall` (the model is kept
    under a `.rejected.onnx` name for inspection, never where the node would load it).
    """
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    out = Path(out) if out else default_model_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    n_val = max(30, frames // 6)
    log(f"rendering {frames} training + {n_val} validation frames from the simulator ...")
    train = render_frames(frames, seed=seed)
    val = render_frames(n_val, seed=seed + 10_000)
    log(f"rendered in {time.time() - t0:.0f} s; training for {epochs} epochs ...")
    model = _build_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))
    rng = np.random.default_rng(seed)
    batch = 16
    for epoch in range(epochs):
        order = rng.permutation(len(train.rgb))
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            w, h = input_size(int(rng.choice(TRAIN_WIDTHS)))
            rgb = train.rgb[idx]
            if rng.random() < 0.5:  # mirror: people walk on both sides
                rgb, ppl = rgb[:, :, ::-1], train.people[idx][:, :, ::-1]
            else:
                ppl = train.people[idx]
            x = torch.from_numpy(to_tensor(np.stack([resize_nearest(f, w, h) for f in rgb])))
            y = torch.from_numpy(_targets(ppl, w, h))
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}")
    model.eval()

    class WithSigmoid(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.sigmoid(self.net(x))

    tmp = out.with_suffix(".tmp.onnx")
    w, h = input_size(DEFAULT_RESOLUTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            WithSigmoid(model),
            (torch.zeros(1, 3, h, w),),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["person"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "person": {2: "h4", 3: "w4"}},
        )
    results = [evaluate(tmp, val, r) for r in (64, 96, DEFAULT_RESOLUTION, 160, 224)]
    default = next(r for r in results if r["resolution"] == DEFAULT_RESOLUTION)
    report = {
        "model": str(out),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "frames": frames,
        "validation_frames": n_val,
        "epochs": epochs,
        "seed": seed,
        "default_resolution": DEFAULT_RESOLUTION,
        "recall_at_default": default["recall"],
        "by_resolution": results,
        "seconds": round(time.time() - t0, 1),
    }
    for r in results:
        log(
            f"  input {r['resolution']:4d} px: recall {r['recall']:.3f} precision {r['precision']:.3f} "
            f"({r['people']} people), {r['infer_ms']:.1f} ms/frame"
        )
    if default["recall"] < min_recall:
        rejected = out.with_suffix(".rejected.onnx")
        tmp.replace(rejected)
        raise RuntimeError(
            f"recall at input_resolution {DEFAULT_RESOLUTION} is {default['recall']:.3f} < {min_recall}; model kept at "
            f"{rejected}, not installed. Train with more frames or epochs (--frames, --epochs)."
        )
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"model written to {out} ({report['seconds']} s)")
    return report
