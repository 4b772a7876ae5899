"""Packaging: every import package is listed (a wheel would silently drop one), the folders map, extras hold."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_of(folder: Path) -> str | None:
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    for pkg, rel in sorted(mapping.items(), key=lambda kv: -len(kv[1])):
        base = ROOT / rel
        if folder == base or base in folder.parents:
            rest = folder.relative_to(base).parts
            return ".".join([pkg, *rest])
    return None


def test_every_package_folder_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = []
    for init in ROOT.rglob("__init__.py"):
        folder = init.parent
        if any(
            part in (".venv", "tests", "build") or part.startswith(".")
            for part in folder.relative_to(ROOT).parts
        ):
            continue
        pkg = _package_of(folder)
        if pkg is not None and pkg not in listed:
            missing.append(pkg)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_imports_from_its_folder():
    import importlib

    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    for top in ("tether.bus", "tether.edge", "tether.cloud", "tether.bench"):
        mod = importlib.import_module(top)
        assert Path(mod.__file__).parent == ROOT / mapping[top]


def test_edge_extra_has_no_cloud_only_packages():
    edge = " ".join(
        PYPROJECT["project"]["optional-dependencies"]["edge"] + PYPROJECT["project"]["dependencies"]
    )
    for heavy in ("torch", "ray", "transformers", "torch_geometric"):
        assert heavy not in edge, f"{heavy} must not be a robot (edge) dependency"


def test_torch_pin_lives_in_constraints_and_python_floor_is_310():
    assert (ROOT / "constraints.txt").read_text().split() == ["torch==2.13.0"]
    assert PYPROJECT["project"]["requires-python"] == ">=3.10"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py310"


def _python310() -> str | None:
    import glob
    import shutil
    import subprocess

    candidates = [
        shutil.which("python3.10"),
        *sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10")),
    ]
    for exe in candidates:
        if exe and subprocess.run([exe, "--version"], capture_output=True).returncode == 0:
            return exe
    return None


COMPILE_ALL = """
import pathlib, sys
bad = []
for folder in sys.argv[1:]:
    for path in pathlib.Path(folder).rglob("*.py"):
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as exc:
            bad.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""


def test_edge_and_bus_code_compiles_on_python_310():
    """ROS 2 Humble and JetPack 6 ship Python 3.10: bus/, edge/ and ros_ws/ must at least parse there."""
    import subprocess

    import pytest

    py310 = _python310()
    if py310 is None:
        pytest.skip("no working python3.10 interpreter on this machine")
    folders = [str(ROOT / f) for f in ("bus", "edge", "ros_ws")]
    res = subprocess.run([py310, "-c", COMPILE_ALL, *folders], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
