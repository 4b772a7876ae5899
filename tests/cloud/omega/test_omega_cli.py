"""`tether omega ...` end to end: import a user graph and train on it, then info, precompute and serve."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tether import settings as settings_mod
from tether.cloud.omega.cli import app


@pytest.fixture
def artefacts(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_ARTEFACTS", str(tmp_path / "artefacts"))
    old = settings_mod._current
    settings_mod._current = None
    yield tmp_path / "artefacts"
    settings_mod._current = old


def test_train_imports_a_user_graph_and_trains(artefacts, tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 8)) + np.eye(3)[y] @ rng.standard_normal((3, 8))
    edges = rng.integers(0, n, (1500, 2))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "e.txt").write_text("".join(f"{a} {b}\n" for a, b in edges))
    args = ["train", "--graph", "mine", "--models", "sage2,gcn2", "--epochs", "2", "--batch-size", "30"]
    files = [
        "--edges",
        str(tmp_path / "e.txt"),
        "--features",
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "y.npy"),
    ]
    result = CliRunner().invoke(app, args + files)
    assert result.exit_code == 0, result.output
    assert "imported 300 nodes" in result.output and "sage2" in result.output and "gcn2" in result.output
    for name in ("sage2", "gcn2"):
        assert (artefacts / "omega" / "mine" / "stores" / name / "meta.json").is_file()
    again = CliRunner().invoke(app, args + files)  # a second import under the same name is refused
    assert again.exit_code != 0 and "pick another --graph name" in again.output
    bad = CliRunner().invoke(app, ["train", "--graph", "mine", "--models", "sage9"])
    assert bad.exit_code != 0 and "<gcn|sage|gat><2|3>" in bad.output


def test_info_precompute_and_serve_on_a_bundle(artefacts, tiny_bundle) -> None:
    shutil.copytree(tiny_bundle.root, artefacts / "omega" / "tiny")
    runner = CliRunner()
    info = runner.invoke(app, ["info", "--graph", "tiny"])
    assert info.exit_code == 0, info.output
    assert "1500 nodes" in info.output and "gat3" in info.output
    pre = runner.invoke(app, ["precompute", "--graph", "tiny", "--models", "sage2", "--partitions", "2"])
    assert pre.exit_code == 0, pre.output
    serve = runner.invoke(
        app, ["serve", "--graph", "tiny", "--model", "sage2", "--method", "omega", "--requests", "2"]
    )
    assert serve.exit_code == 0, serve.output
    assert "median latency" in serve.output
    wrong = runner.invoke(app, ["serve", "--graph", "tiny", "--method", "psychic"])
    assert wrong.exit_code != 0 and "method must be one of" in wrong.output
