"""Settings are read from the environment in one place, validated with the variable named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.settings import Settings, SettingsError


def test_defaults_stay_on_loopback():
    s = Settings.from_env({})
    assert s.connect == ("tcp/127.0.0.1:7447",) and s.listen == ("tcp/127.0.0.1:7447",)
    assert s.lm_host == "127.0.0.1" and s.metrics_host == "127.0.0.1"


def test_environment_overrides(tmp_path):
    s = Settings.from_env(
        {
            "TETHER_CONNECT": "tcp/10.0.0.5:7447, tcp/10.0.0.6:7447",
            "TETHER_ARTEFACTS": str(tmp_path / "a"),
            "TETHER_LM_PORT": "8123",
        }
    )
    assert s.connect == ("tcp/10.0.0.5:7447", "tcp/10.0.0.6:7447")
    assert s.artefacts == tmp_path / "a" and s.lm_port == 8123
    assert s.artefact_dir("omega").is_dir()


@pytest.mark.parametrize(
    "env, match",
    [
        ({"TETHER_LM_PORT": "eighty"}, "TETHER_LM_PORT must be a TCP port"),
        ({"TETHER_LM_PORT": "70000"}, "0 < port < 65536"),
        ({"TETHER_CONNECT": "localhost:7447"}, "proto/host:port"),
        ({"TETHER_ZENOH_CONFIG": "/nonexistent.json5"}, "does not exist"),
        ({"TETHER_TRANSPORT": "dds"}, "'zenoh' or 'rclpy'"),
    ],
)
def test_bad_settings_name_the_variable(env, match):
    with pytest.raises(SettingsError, match=match):
        Settings.from_env(env)


def test_only_settings_reads_the_environment():
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("bus", "edge", "cloud", "bench", "tether"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "settings.py" and path.parent.name == "tether":
                continue
            text = path.read_text()
            if "os.environ[" in text or "os.environ.get(" in text or "os.getenv(" in text:
                offenders.append(str(path.relative_to(root)))
    assert not offenders, f"read the environment in tether/settings.py only: {offenders}"
