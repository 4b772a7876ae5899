"""tether bench bus: one real publisher/subscriber pair of its workers reports what the rows are made of."""

from __future__ import annotations

import pytest

from tether.bench.bus import _cpu_us, _one


@pytest.mark.parametrize("api", ["raw", "node"])
def test_a_pair_reports_counts_and_cpu_of_each_process(bus, api):
    r = _one(api, bus.endpoint, 64 * 1024, 400, 0.0)
    assert r["count"] == 400 and r["pub_count"] == 400  # reliable: every message arrives, none twice
    assert r["seconds"] > 0
    # Every process did work for what it moved: CPU is measured, not left at zero.
    assert r["pub_cpu_s"] > 0 and r["cpu_s"] > 0 and r["router_cpu_s"] > 0
    parts = _cpu_us(r, hosted=True)
    assert set(parts) == {"publisher", "subscriber", "router"}
    assert parts["subscriber"] == pytest.approx(1e6 * r["cpu_s"] / 400)
    assert parts["publisher"] == pytest.approx(1e6 * r["pub_cpu_s"] / 400)
    # A joined router belongs to another process: its CPU is not this one's to count.
    assert set(_cpu_us(r, hosted=False)) == {"publisher", "subscriber"}
