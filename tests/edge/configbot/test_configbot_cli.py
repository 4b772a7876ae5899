"""`tether configbot`: validate names the line of a mistake; tune runs ConfigBot on whatever stack is on the bus."""

from __future__ import annotations

from typer.testing import CliRunner

from tether.edge.configbot.cli import app

runner = CliRunner()


def test_validate_reports_the_line(spec_file):
    good = spec_file("name: ok\nconstraints: [{rate: /w/out, min: 5}]\n")
    res = runner.invoke(app, ["validate", str(good)])
    assert res.exit_code == 0 and "is valid" in res.output
    bad = spec_file("name: bad\nconstraints:\n  - {rate: /w/out, min: 5, max: 1}\n", "bad.yaml")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2 and f"{bad}:3" in res.output.replace("\n", "")


def test_tune_runs_on_the_stack_already_on_the_bus(bus, workers, spec_file, tmp_path):
    spec = spec_file("""
        name: cli
        constraints: [{rate: /w/out, min: 5}]
        objective: {minimize: "stack:cpu.cores"}
        knobs: [{node: /w/w, kind: parameter, name: work_ms, min: 1, max: 20}]
        trial: {settle_s: 0.3, measure_s: 1.0, max_trials: 2, startup_trials: 2}
        monitor: {startup_s: 1}
        context: {load_bins: null, power_mode: false}
        """)
    workers.start("w", ns="/w", rate=20.0, work_ms=2.0)
    res = runner.invoke(
        app,
        [
            "tune",
            "--spec",
            str(spec),
            "--duration",
            "20",
            "--no-view",
            "--sampler",
            "random",
            "--no-cgroups",
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ConfigBot report: spec cli (tune)" in res.output and "converged" in res.output
    assert (tmp_path / "run" / "timeline.png").is_file() and (tmp_path / "run" / "report.json").is_file()
