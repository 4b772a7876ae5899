"""`tether halos` commands through typer's runner: the topology report and a tiny simulation."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tether.cloud.halos.cli import app


def test_topology_command_reports_links_workers_and_allreduce() -> None:
    result = CliRunner().invoke(app, ["topology"])
    assert result.exit_code == 0, result.output
    assert "0.117" in result.output and "all-reduce" in result.output
    assert "H_i (H=8)" in result.output


def test_simulate_command_writes_the_curve(tmp_path) -> None:
    out = tmp_path / "curve.json"
    args = [
        "simulate",
        "--method",
        "sync",
        "--budget",
        "4",
        "--d-model",
        "16",
        "--n-layer",
        "1",
        "--seq-len",
        "16",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    curve = json.loads(out.read_text())
    assert curve["method"] == "sync" and curve["steps"][-1] == 4
    assert curve["val_loss"][-1] < curve["val_loss"][0]


def test_bad_topology_file_is_reported(tmp_path) -> None:
    bad = tmp_path / "regions.yaml"
    bad.write_text("worker_speeds: [[1.0]]\n")
    result = CliRunner().invoke(app, ["topology", "--topology", str(bad)])
    assert result.exit_code != 0
    assert "bandwidth_gbps" in str(result.exception)
