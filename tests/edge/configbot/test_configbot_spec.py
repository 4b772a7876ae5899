"""The specification: a valid file loads; each mistake is an error naming the file, the line and the rule.
Plus the arithmetic under it: violations, the objective, topic rates from inter-arrival times."""

from __future__ import annotations

import numpy as np
import pytest

from tether.edge.configbot.evaluate import evaluate
from tether.edge.configbot.profiler import rate_from_arrivals
from tether.edge.configbot.spec import SpecError, load_spec
from tether.edge.configbot.tuner import probe_config

GOOD = """
name: robot
nodes:
  navigation: {essential: true, quota_floor: 0.3}
  perception: {}
constraints:
  - {rate: /cmd_vel, min: 15}
  - {metric: "navigation:latency.callback.p95_ms", max: 60}
  - {metric: "stack:cpu.cores", max: 1.8, core: false}
objective:
  max_min_rate: {/detections: 2.0, /map: 0.5}
knobs:
  - {node: navigation, kind: cpu_quota, min: 0.1, max: 1.0}
  - {node: perception, kind: cpu_quota, min: 0.05, max: 1.0, log: true}
  - {node: perception, kind: rate_cap, topic: camera/image, min: 1, max: 15}
  - {node: perception, kind: parameter, name: input_resolution, type: int, min: 64, max: 224, step: 32}
  - {node: navigation, kind: cpu_weight, min: 0.5, max: 8}
"""


def test_a_valid_spec_loads_with_its_signals_and_probe(spec_file):
    spec = load_spec(spec_file(GOOD))
    keys = {s.key for s in spec.signals()}
    assert {
        "rate(/cmd_vel)",
        "/navigation:latency.callback.p95_ms",
        "stack:cpu.cores",
        "rate(/detections)",
    } <= keys
    assert spec.node_names() == ["/navigation", "/perception"]
    probe = probe_config(spec, [k.key for k in spec.knobs])
    # The most likely feasible configuration: the essential node's resources high, the rest low.
    assert probe["navigation:cpu_quota"] == 1.0 and probe["navigation:cpu_weight"] == 8
    assert probe["perception:cpu_quota"] == 0.05 and probe["perception:parameter:input_resolution"] == 64
    assert probe["perception:rate_cap:camera/image"] == 1


@pytest.mark.parametrize(
    ("replace", "by", "line", "words"),
    [
        ("min: 0.1, max: 1.0}", "min: 1.0, max: 0.1}", 12, "min < max must hold"),
        ("kind: cpu_weight", "kind: cpu_speed", 16, "kind"),
        ("{rate: /cmd_vel, min: 15}", "{rate: /cmd_vel}", 6, "needs min: or max:"),
        ("{rate: /cmd_vel, min: 15}", "{rate: /cmd_vel, min: -5}", 6, "cannot be negative"),
        ('"navigation:latency.callback.p95_ms"', '"latency.callback.p95_ms"', 7, "<node>:<metric>"),
        ("quota_floor: 0.3", "quota_floor: 1.5", 12, "quota_floor 1.5 above this knob's max"),
        ("{/detections: 2.0, /map: 0.5}", "{/detections: 2.0, /cmd_vel: 1}", 10, "core constraint's signal"),
        ("type: int, min: 64", "type: int, min: 64.5", 15, "whole bounds"),
    ],
)
def test_spec_errors_name_the_line_and_the_rule(spec_file, replace, by, line, words):
    assert replace in GOOD
    path = spec_file(GOOD.replace(replace, by, 1))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert exc.value.line == line, str(exc.value)
    assert words in str(exc.value) and str(path) in str(exc.value)


def test_objective_terms_are_topics_or_node_metrics(spec_file):
    spec = load_spec(
        spec_file(
            "name: o\nconstraints: [{rate: /a, min: 1}]\nobjective: {maximize: '/cloud/lm:lm.tokens_per_s'}\n"
        )
    )
    ((sig, weight),) = spec.objective.terms(spec.namespace)
    assert (sig.kind, sig.node, sig.name, weight) == ("metric", "/cloud/lm", "lm.tokens_per_s", 1.0)
    spec = load_spec(
        spec_file("name: o\nconstraints: [{rate: /a, min: 1}]\nobjective: {maximize: /b}\n", "b.yaml")
    )
    assert spec.objective.terms(spec.namespace)[0][0].key == "rate(/b)"


def test_duplicate_knob_and_bad_yaml_are_located(spec_file):
    dup = GOOD + "  - {node: navigation, kind: cpu_quota, min: 0.2, max: 0.9}\n"
    with pytest.raises(SpecError, match="appears twice") as exc:
        load_spec(spec_file(dup))
    assert exc.value.line == 17
    with pytest.raises(SpecError, match="not valid YAML") as exc:
        load_spec(spec_file("name: x\nconstraints: [\n"))
    assert exc.value.line is not None


def test_violations_are_normalised_and_missing_signals_break(spec_file):
    spec = load_spec(spec_file(GOOD))
    ev = evaluate(
        spec,
        {
            "rate(/cmd_vel)": 12.0,
            "/navigation:latency.callback.p95_ms": 30.0,
            "stack:cpu.cores": 1.0,
            "rate(/detections)": 4.0,
            "rate(/map)": 1.0,
        },
    )
    assert ev.violations[0] == pytest.approx((15 - 12) / 15)
    assert ev.violations[1] == pytest.approx((30 - 60) / 60)
    assert not ev.core_ok and not ev.feasible
    assert ev.objective == pytest.approx(min(4.0 / 2.0, 1.0 / 0.5))
    assert ev.worst_core_ratio(spec) == pytest.approx(12 / 15)
    silent = evaluate(spec, {"rate(/cmd_vel)": 20.0, "stack:cpu.cores": 1.0})
    assert silent.violations[1] == 1.0 and silent.objective is None  # a silent node counts as broken


def test_rate_from_arrivals_reads_a_stall_as_slowing():
    steady = np.arange(0.0, 2.0, 0.05)  # 20 Hz over (0, 2]
    assert rate_from_arrivals(steady[1:], 0.0, 2.0, before=0.0) == pytest.approx(20.0, rel=0.02)
    stalled = steady[steady <= 1.0]  # the topic stops at 1 s
    r = rate_from_arrivals(stalled[1:], 0.0, 2.0, before=0.0)
    assert r < 11.0  # not 20 Hz: the open gap to the window's end counts
    assert rate_from_arrivals(np.array([]), 0.0, 2.0) == 0.0
