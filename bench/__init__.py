"""The benchmark contract: every `tether bench <system>` reports through these types.

A benchmark is an entry point in the group `tether.bench` naming a function
`run(ctx: BenchContext) -> BenchReport`. It measures the system and its baseline
in the same run; `tether bench` writes `<out>/<system>.json` and `<out>/<system>.png`
and prints the table. Each figure is the median of n >= 3 repeats after a warm-up
(`repeat`); `row` orients the ratio so that above 1 is better than the baseline.
"""

from __future__ import annotations

from tether.bench._contract import (
    BenchContext,
    BenchReport,
    Row,
    machine_info,
    repeat,
    row,
    write_report,
)

__all__ = ["BenchContext", "BenchReport", "Row", "machine_info", "repeat", "row", "write_report"]
