"""LatencyWindow: every event measured at low rates, a systematic sample at high rates, and back to every
event when the rate drops (a fake clock: no timing in the test)."""

from __future__ import annotations

import pytest

from tether.bus.telemetry import LatencyWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _run(w: LatencyWindow, clock: FakeClock, rate_hz: float, seconds: float) -> list[int]:
    """Offer events at `rate_hz` for `seconds`; returns the indices of the events that were due."""
    due = []
    for i in range(int(rate_hz * seconds)):
        clock.now += 1.0 / rate_hz
        if w.due():
            due.append(i)
    return due


def test_every_event_is_measured_at_a_low_rate(clock):
    w = LatencyWindow(clock=clock)
    assert _run(w, clock, 200.0, 2.0) == list(range(400))
    assert w.stride == 1


@pytest.mark.parametrize("rate_hz", [10_000.0, 100_000.0])
def test_a_busy_topic_is_sampled_evenly(clock, rate_hz):
    w = LatencyWindow(clock=clock)
    _run(w, clock, rate_hz, 0.1)  # the stride is set at the first samples
    due = _run(w, clock, rate_hz, 2.0)
    # About SAMPLES_PER_S a second, or every MAX_STRIDE-th message where that is more.
    expected = max(LatencyWindow.SAMPLES_PER_S, rate_hz / LatencyWindow.MAX_STRIDE)
    assert 0.9 * expected <= len(due) / 2.0 <= 1.15 * expected
    gaps = {b - a for a, b in zip(due, due[1:])}
    assert gaps == {w.stride} and w.stride > 1  # every stride-th message, across the whole window


def test_the_stride_returns_to_one_when_the_rate_drops(clock):
    w = LatencyWindow(clock=clock)
    _run(w, clock, 100_000.0, 0.5)
    assert w.stride > 1
    due = _run(w, clock, 100.0, 1.0)
    assert w.stride == 1
    # The first sample comes within MAX_STRIDE messages; from then on every message is measured.
    assert due[0] < LatencyWindow.MAX_STRIDE
    assert due == list(range(due[0], 100))


def test_samples_are_kept_and_taken_once(clock):
    w = LatencyWindow(maxlen=3)
    for ms in (1.0, 2.0, 3.0, 4.0):
        w.add(ms)
    assert list(w.take()) == [2.0, 3.0, 4.0]
    assert w.take().size == 0
