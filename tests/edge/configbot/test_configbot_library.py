"""The context library on SQLite: keyed by specification and fingerprint, keeps the better feasible
configuration, hands out no stale entry, survives a reopen; a changed specification shares nothing."""

from __future__ import annotations

from tether.edge.configbot.context import bin_label
from tether.edge.configbot.library import ContextLibrary, spec_hash
from tether.edge.configbot.spec import load_spec

SPEC = """
name: lib
constraints: [{rate: /cmd_vel, min: 20}]
objective: {max_min_rate: {/detections: 5}}
knobs: [{node: perception, kind: cpu_quota, min: 0.1, max: 1}]
"""


def test_library_keeps_the_best_feasible_config_per_context(tmp_path, spec_file):
    spec = load_spec(spec_file(SPEC))
    db = tmp_path / "library.db"
    with ContextLibrary(db, spec) as lib:
        assert lib.lookup("load=high") is None
        assert lib.store("load=high", {"perception:cpu_quota": 0.3}, 0.8, True, study="s1", trials=7)
        assert not lib.store("load=high", {"perception:cpu_quota": 0.9}, 0.5, True)  # worse: kept out
        assert not lib.store("load=high", {"perception:cpu_quota": 0.2}, 2.0, False)  # infeasible: kept out
        assert lib.store("load=high", {"perception:cpu_quota": 0.4}, 0.9, True)  # better: replaces
        assert lib.store("load=low", {"perception:cpu_quota": 1.0}, 1.0, True)
        lib.mark_used("load=high")
    with ContextLibrary(db, spec) as lib:  # on disk: a returning robot finds it
        entry = lib.lookup("load=high")
        assert entry.config == {"perception:cpu_quota": 0.4} and entry.objective == 0.9 and entry.uses == 1
        lib.invalidate("load=high")  # failed when reused
        assert lib.lookup("load=high") is None and lib.lookup("load=high", include_stale=True).stale
        assert lib.store("load=high", {"perception:cpu_quota": 0.5}, 0.1, True)  # a stale entry is replaced
        assert lib.lookup("load=high").config == {"perception:cpu_quota": 0.5}
        assert [e.fingerprint for e in lib.entries()] == ["load=low", "load=high"]
    other = load_spec(spec_file(SPEC.replace("min: 20", "min: 25"), "other.yaml"))
    assert spec_hash(other) != spec_hash(spec)
    with ContextLibrary(db, other) as lib:
        assert lib.lookup("load=low") is None  # made for another specification


def test_bin_labels():
    assert [bin_label(v, [1.5]) for v in (0.0, 1.4, 1.5, 9.0)] == ["low", "low", "high", "high"]
    assert [bin_label(v, [1.0, 2.0]) for v in (0.5, 1.5, 2.5)] == ["low", "mid", "high"]
    assert bin_label(5.0, [1, 2, 3, 4]) == "b4"
    # Hysteresis: near the edge the current bin holds; well past it, the bin changes.
    assert bin_label(2.7, [2.5], current="low", band=0.25) == "low"
    assert bin_label(3.2, [2.5], current="low", band=0.25) == "high"
    assert bin_label(2.2, [2.5], current="high", band=0.25) == "high"
    assert bin_label(1.8, [2.5], current="high", band=0.25) == "low"
    assert (
        bin_label(2.3, [1.0, 2.0], current="low", band=0.25) == "mid"
    )  # past the first edge, not the second
