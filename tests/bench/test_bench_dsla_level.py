"""The DSLA benchmark's chosen level: the lowest that the calibration predicts decodes 2.3x faster."""

from __future__ import annotations

import math

import pytest

from tether.bench.dsla import SPEED_TARGET, level_for_speedup


def _predicted(speedup: float, furthest: int, level: int) -> float:
    # A step with n layers converted takes 1 - n * saving of the original's.
    return 1 / (1 - level * (1 - 1 / speedup) / furthest)


@pytest.mark.parametrize("speedup,furthest", [(2.70, 20), (4.33, 26), (2.48, 20), (3.0, 30), (2.3, 12)])
def test_the_level_is_the_lowest_predicted_to_meet_the_target(speedup, furthest):
    level, need = level_for_speedup(speedup, furthest)
    assert _predicted(speedup, furthest, level) >= SPEED_TARGET - 1e-9
    assert level == 1 or _predicted(speedup, furthest, level - 1) < SPEED_TARGET
    assert level - 1 < need <= level + 1e-9


def test_the_figures_of_2026_11_27_give_18_of_20():
    # 2026-11-27: 20 converted layers decoded 2.70x at batch 8 / 8K; 18 measured 2.41x, 15 2.22x.
    assert level_for_speedup(2.70, 20)[0] == 18


def test_a_chain_too_short_for_the_target_gives_its_furthest_level():
    level, need = level_for_speedup(1.5, 8)
    assert level == 8 and need > 8
    level, need = level_for_speedup(0.9, 8)  # converting made decoding slower
    assert level == 8 and need == math.inf


def test_bad_calibration_figures_are_refused():
    with pytest.raises(ValueError, match="furthest >= 1"):
        level_for_speedup(2.0, 0)
    with pytest.raises(ValueError, match="speedup > 0"):
        level_for_speedup(0.0, 20)


def test_the_target_pair_takes_turns(monkeypatch):
    # The engine is not needed to check the order of the turns: decode_speed is replaced by a recorder.
    from tether.bench.dsla import _speed as speed

    calls = []

    def record(engine, export, batch, steps, repeats):
        calls.append(export)
        return [float(len(calls))], [1.0]

    monkeypatch.setattr(speed, "decode_speed", record)
    out = speed.paired_decode_speed(None, {"original": "A", "dsla-19/30": "B"}, 8, 4, rounds=4)
    assert calls == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert out["original"][0] == [1.0, 4.0, 5.0, 8.0] and out["dsla-19/30"][0] == [2.0, 3.0, 6.0, 7.0]
