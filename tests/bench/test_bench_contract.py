"""The benchmark contract: ratio orientation, verdicts, the JSON file, and the shared checker agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tether.bench import BenchContext, BenchReport, repeat, row, write_report

REPO = Path(__file__).resolve().parents[2]


def _checker() -> Path:
    """The shared contract checker beside the checkout (../shared), or beside the repository a local
    clone was made from (a fresh clone in a temporary folder)."""
    homes = [REPO]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        homes.append(Path(origin).resolve())
    candidates = [home.parent / "shared" / "tools" / "bench_contract.py" for home in homes]
    return next((c for c in candidates if c.is_file()), candidates[0])


def test_ratio_is_oriented_so_above_one_is_better():
    faster = row(
        "lat", [10.0, 12.0, 11.0], "ms", "lower", baseline="b", baseline_values=[33.0, 30.0, 36.0], target=2.0
    )
    assert faster.value == 11.0 and faster.baseline_value == 33.0
    assert faster.ratio == pytest.approx(3.0) and faster.meets_target is True
    slower = row("tput", [50.0], "msgs/s", "higher", baseline="b", baseline_values=[100.0], target=0.75)
    assert slower.ratio == pytest.approx(0.5) and slower.meets_target is False
    absolute = row("abs", [60_000, 40_000, 55_000], "msgs/s", "higher", target=50_000)
    assert absolute.ratio is None and absolute.meets_target is True and absolute.n == 3
    report_only = row("info", [1.0, 2.0, 3.0], "s", "lower")
    assert report_only.target is None and report_only.meets_target is None


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="direction"):
        row("x", [1.0], "s", "sideways")
    with pytest.raises(ValueError, match="baseline_values"):
        row("x", [1.0], "s", "lower", baseline="b")
    with pytest.raises(ValueError, match="n >= 1"):
        repeat(lambda: 1.0, n=0)


def test_repeat_warms_up_then_measures():
    calls = []
    assert repeat(lambda: calls.append(1) or len(calls), n=3, warmup=2) == [3.0, 4.0, 5.0]


def test_written_report_passes_the_shared_checker(tmp_path):
    ctx = BenchContext(system="demo", out_dir=tmp_path)
    rows = [
        row(
            "good", [1.0, 1.1, 0.9], "ms", "lower", baseline="b", baseline_values=[3.0, 3.0, 3.0], target=2.0
        ),
        row("info", [5.0, 6.0, 7.0], "x", "higher"),
    ]

    def plot(path: Path) -> None:
        path.write_bytes(b"\x89PNG\r\n")

    path = write_report(ctx, BenchReport(rows, plot=plot))
    doc = json.loads(path.read_text())
    assert doc["system"] == "demo" and doc["quick"] is False
    assert {"cpu", "cores", "memory", "python", "git_commit"} <= set(doc["machine"])
    assert (tmp_path / "demo.png").exists()
    checker = _checker()
    assert checker.is_file(), f"the shared contract checker is expected at {checker}"
    res = subprocess.run([sys.executable, str(checker), str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    assert "contract ok" in res.stdout and "all targets met" in res.stdout
    with pytest.raises(ValueError, match="no row with a target"):
        write_report(ctx, BenchReport([rows[1]]))
