"""ConfigBot end to end on real worker nodes over the bus: a crash mid-trial fails the trial and restores
the last good configuration; specification mistakes end in a clear error or an infeasible report; under
contention it finds a feasible configuration, and the context library warm-starts the context's return."""

from __future__ import annotations

import os
import signal
import threading

import optuna
import pytest
from tests_helpers import wait_for

from tether.edge.cgroups import CgroupError, CgroupManager, detect_layout
from tether.edge.configbot import BotOptions, ConfigBot, load_spec

try:
    detect_layout()
    CGROUPS = os.geteuid() == 0
except CgroupError:
    CGROUPS = False


def _bot(spec, probe, tmp_path, **opts) -> ConfigBot:
    opts.setdefault("store_dir", tmp_path / "store")
    opts.setdefault("run_dir", tmp_path / f"run{len(list(tmp_path.glob('run*')))}")
    opts.setdefault("sampler", "random")
    return ConfigBot(spec, probe, BotOptions(**opts))


def _run_until(bot: ConfigBot, done, timeout: float) -> dict:
    report: dict = {}
    runner = threading.Thread(target=lambda: report.update(bot.run(duration=timeout)))
    runner.start()
    try:
        wait_for(done, timeout=timeout)
    finally:
        bot.stop()
        runner.join(timeout=30)
    return report


def _converged_for(bot: ConfigBot, seconds: float) -> bool:
    conv = [e for e in bot.timeline.events if e["kind"] == "converged"]
    return bool(conv) and bot.now() > conv[0]["t"] + seconds


def _core_and_worker(workers, spec_file, name: str):
    """A core node (/core/out, at least 5 Hz) and a worker whose rate is the knob; (spec, the core's process)."""
    spec = load_spec(
        spec_file(f"""
        name: {name}
        constraints: [{{rate: /core/out, min: 5}}]
        objective: {{max_min_rate: {{/w/out: 1.0}}}}
        knobs: [{{node: /w/w, kind: parameter, name: rate, min: 10, max: 60}}]
        trial: {{settle_s: 0.5, measure_s: 1.5, max_trials: 3, startup_trials: 3, patience: 10, confirm: 2}}
        monitor: {{startup_s: 1, node_timeout_s: 8}}
        context: {{load_bins: null, power_mode: false}}
        """)
    )
    proc = workers.start("core", ns="/core", rate=20.0, work_ms=1.0)
    workers.start("w", ns="/w", rate=20.0, work_ms=1.0)
    return spec, proc


def _freeze_core(
    bot: ConfigBot, proc, kind: str, resume_after: int, done, timeout: float = 40.0
) -> tuple[dict, bool]:
    """Run `bot` until `done()`, the core node frozen (SIGSTOP, as a burst of load would starve it) from the
    first measurement ConfigBot verifies (before any `kind` event) until `resume_after` `kind` events.
    Returns (the report, whether it was frozen)."""
    froze: list[bool] = []

    def step() -> bool:
        n = sum(e["kind"] == kind for e in bot.timeline.events)
        if not froze and bot.state.value == "verifying" and n == 0:
            proc.send_signal(signal.SIGSTOP)
            froze.append(True)
        elif froze and n >= resume_after:
            proc.send_signal(signal.SIGCONT)
        return done()

    try:
        report = _run_until(bot, step, timeout=timeout)
    finally:
        proc.send_signal(signal.SIGCONT)
    return report, bool(froze)


def test_a_node_crashing_mid_trial_fails_it_and_the_last_good_config_returns(
    bus, workers, probe, spec_file, stack, tmp_path
):
    quota = "  - {node: /w/w, kind: cpu_quota, min: 0.1, max: 1.0}\n" if CGROUPS else ""
    spec = load_spec(
        spec_file(f"""
        name: crash
        stack: {stack}
        constraints: [{{rate: /w/out, min: 10}}]
        objective: {{minimize: "stack:cpu.cores"}}
        knobs:
          - {{node: /w/w, kind: parameter, name: work_ms, min: 1, max: 30}}
        {quota}
        trial: {{settle_s: 0.5, measure_s: 6.0, max_trials: 2, startup_trials: 2}}
        monitor: {{startup_s: 1}}
        context: {{load_bins: null, power_mode: false}}
        """)
    )
    proc = workers.start("w", ns="/w", rate=20.0, work_ms=5.0)
    bot = _bot(spec, probe, tmp_path, library=False)
    report: dict = {}
    runner = threading.Thread(target=lambda: report.update(bot.run(duration=40)))
    runner.start()
    try:
        # The probe (trial 0) is feasible and becomes the last good configuration; crash trial 1 mid-way.
        assert wait_for(lambda: bot.trial == 1, timeout=30), f"no second trial: {bot.status()}"
        last_good = dict(bot.last_good)
        assert last_good["/w/w:parameter:work_ms"] == 1
        proc.send_signal(signal.SIGKILL)  # the trial has 6.5 s left: the crash is seen within it
        proc.wait()
        new = workers.start("w", ns="/w", rate=20.0, work_ms=5.0)  # the launcher's respawn
        assert wait_for(lambda: bot.profiler.nodes["/w/w"].pid == new.pid, timeout=20)
        assert wait_for(lambda: any(e["kind"] == "reapplied" for e in bot.timeline.events), timeout=15)
        if CGROUPS:  # the respawned process went back into the node's group (removed when the bot stops)
            with open(f"/proc/{new.pid}/cgroup") as f:
                assert f"tether/{stack}/w" in f.read()
    finally:
        bot.stop()
        runner.join(timeout=30)
    crashed = [e for e in bot.timeline.events if e["kind"] == "trial_end" and e["outcome"] == "crashed"]
    assert [e["trial"] for e in crashed] == [1], [
        (e["t"], e["kind"], e.get("outcome"), e.get("trial")) for e in bot.timeline.events
    ]
    rollback = next(e for e in bot.timeline.events if e["kind"] == "rollback")
    assert "crashed during trial 1" in rollback["why"] and rollback["config"] == last_good
    reapplied = next(e for e in bot.timeline.events if e["kind"] == "reapplied")
    assert reapplied["pid"] == new.pid and reapplied["problems"] == []
    assert reapplied["config"] == {k: v for k, v in last_good.items()}, (
        "the returning node gets the last good config"
    )
    study = optuna.load_study(
        storage=bot.storage, study_name=next(e["study"] for e in bot.timeline.events if e["kind"] == "tuning")
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert report["state"] == "stopped"


def test_an_unknown_topic_is_a_clear_error_not_a_crash(bus, workers, probe, spec_file, tmp_path):
    spec = load_spec(
        spec_file("""
        name: unknown
        constraints: [{rate: /no/such/topic, min: 5}]
        knobs: [{node: /w/w, kind: parameter, name: work_ms, min: 1, max: 30}]
        """)
    )
    workers.start("w", ns="/w", rate=20.0, work_ms=1.0)
    bot = _bot(spec, probe, tmp_path, topic_grace_s=3.0, cgroups=False)
    report = bot.run(duration=30)
    assert report["state"] == "error"
    assert (
        "/no/such/topic" in report["error"]
        and "no publisher" in report["error"]
        and "/w/out" in report["error"]
    )
    assert (bot.run_dir / "report.json").is_file()


def test_an_impossible_threshold_is_reported_infeasible_with_the_best_found(
    bus, workers, probe, spec_file, tmp_path
):
    spec = load_spec(
        spec_file("""
        name: impossible
        constraints: [{rate: /w/out, min: 500}]
        knobs: [{node: /w/w, kind: parameter, name: work_ms, min: 1, max: 30}]
        trial: {settle_s: 0.3, measure_s: 1.0, max_trials: 3, startup_trials: 3, abort_ratio: 0.0}
        monitor: {startup_s: 1}
        context: {load_bins: null, power_mode: false}
        """)
    )
    workers.start("w", ns="/w", rate=20.0, work_ms=1.0)
    bot = _bot(spec, probe, tmp_path, cgroups=False)
    runner = threading.Thread(target=lambda: bot.run(duration=60))
    runner.start()
    try:
        assert wait_for(lambda: bot.infeasible is not None, timeout=40), bot.status()
    finally:
        bot.stop()
        runner.join(timeout=30)
    report = bot.report()
    assert report["infeasible"]["trials"] == 3
    assert (
        report["infeasible"]["best_found"]["/w/w:parameter:work_ms"] in (1, 30)
        or report["infeasible"]["best_found"]
    )
    assert any("infeasible" in m for m in report["messages"])
    assert report["best"] is None


def test_the_best_is_re_measured_and_one_that_no_longer_holds_gives_way(
    bus, workers, probe, spec_file, tmp_path
):
    # The core node is frozen (SIGSTOP) while the best trial is re-measured, as a burst of load would starve
    # it: that configuration is rejected, the next best is re-measured, holds, and is the one converged on.
    spec, proc = _core_and_worker(workers, spec_file, "confirm")
    bot = _bot(spec, probe, tmp_path, cgroups=False, library=False)
    report, froze = _freeze_core(
        bot,
        proc,
        "confirm",
        1,
        lambda: any(e["kind"] in ("converged", "infeasible") for e in bot.timeline.events),
        timeout=45,
    )
    confirms = [e for e in bot.timeline.events if e["kind"] == "confirm"]
    trials = {t["trial"]: t for t in report["trials"]}
    assert froze and len(confirms) == 2, [(e["kind"], e.get("trial")) for e in bot.timeline.events]
    first, second = confirms
    best_by_trial = max((t for t in trials.values() if t["feasible"]), key=lambda t: t["objective"])
    assert first["trial"] == best_by_trial["trial"] and first["held"] is False
    assert second["trial"] != first["trial"] and second["held"] is True
    conv = next(e for e in bot.timeline.events if e["kind"] == "converged")
    assert conv["trial"] == second["trial"] and conv["confirmed"] is True
    assert conv["config"] == trials[second["trial"]]["config"]
    assert (
        bot.applier.current["/w/w:parameter:rate"] == trials[second["trial"]]["config"]["/w/w:parameter:rate"]
    )
    study = optuna.load_study(
        storage=bot.storage, study_name=next(e["study"] for e in bot.timeline.events if e["kind"] == "tuning")
    )
    assert study.user_attrs["unconfirmed"] == [first["trial"]]


def test_a_stored_configuration_gets_a_second_measurement_and_is_dropped_after_two_misses(
    bus, workers, probe, spec_file, tmp_path
):
    # A first run tunes and stores its configuration. The second finds it in the library; the core node is
    # frozen (SIGSTOP) through the first verification only: the second measurement holds, no tuning. The
    # third keeps the core node frozen through both: the stored configuration is dropped and ConfigBot tunes.
    spec, proc = _core_and_worker(workers, spec_file, "verify")
    first = _bot(spec, probe, tmp_path, cgroups=False)
    report = _run_until(first, lambda: _converged_for(first, 0.5), timeout=45)
    assert report["best"] is not None, report["messages"]
    stored = report["best"]["config"]

    def verifies(bot: ConfigBot) -> list[dict]:
        return [e for e in bot.timeline.events if e["kind"] == "verify"]

    second = _bot(spec, probe, tmp_path, cgroups=False)
    _, froze = _freeze_core(
        second,
        proc,
        "verify",
        1,
        lambda: any(e["kind"] in ("converged", "tuning") for e in second.timeline.events),
    )
    assert froze, second.timeline.events
    assert [(e["attempt"], e["held"]) for e in verifies(second)] == [(1, False), (2, True)]
    kinds = [e["kind"] for e in second.timeline.events]
    assert "tuning" not in kinds, kinds
    conv = next(e for e in second.timeline.events if e["kind"] == "converged")
    assert conv["reason"].endswith("library") and conv["config"] == stored

    third = _bot(spec, probe, tmp_path, cgroups=False)
    _, froze = _freeze_core(
        third, proc, "verify", 2, lambda: any(e["kind"] == "tuning" for e in third.timeline.events)
    )
    assert froze, third.timeline.events
    assert [(e["attempt"], e["held"]) for e in verifies(third)] == [(1, False), (2, False)]
    tuning = next(e for e in third.timeline.events if e["kind"] == "tuning")
    assert "library configuration failed" in str(tuning), tuning


@pytest.mark.serial
@pytest.mark.skipif(not CGROUPS, reason="the contention is a CPU quota on the stack's cgroup (needs root)")
def test_under_contention_configbot_finds_a_feasible_config_and_the_library_warm_starts(
    bus, workers, probe, spec_file, stack, tmp_path
):
    # The stack gets 0.2 cores (an emulated low-power mode); the core node needs ~0.13 of them for 35 Hz,
    # the hog takes what it can: by fair share the core node falls to ~25 Hz, below its 28 Hz minimum.
    # One-second rates under a 0.2-core quota (100 ms periods) swing by about 10%, so the spec asks 10%
    # headroom of a trial, as a user tuning on such a platform would (with the default 5% the chosen
    # configuration sat 1-14% above the minimum and missed 3 of 8 windows after convergence in 1 run of 4).
    spec = load_spec(
        spec_file(f"""
        name: contention
        stack: {stack}
        nodes:
          /core/core: {{essential: true}}
          /hog/hog: {{}}
        constraints: [{{rate: /core/out, min: 28}}]
        objective: {{max_min_rate: {{/hog/out: 1.0}}}}
        knobs:
          - {{node: /hog/hog, kind: cpu_quota, min: 0.02, max: 0.2, log: true}}
          - {{node: /hog/hog, kind: parameter, name: work_ms, min: 2, max: 20}}
        trial: {{settle_s: 0.5, measure_s: 1.5, max_trials: 5, startup_trials: 2, patience: 3, margin: 0.1}}
        monitor: {{startup_s: 1.5}}
        context: {{load_bins: null}}
        """)
    )
    workers.start("core", ns="/core", rate=35.0, work_ms=4.0)
    workers.start("hog", ns="/hog", rate=200.0, work_ms=20.0)
    manager = CgroupManager(stack)
    try:
        manager.set_quota(None, 0.2)
        first = _bot(spec, probe, tmp_path, sampler="gp")
        # Eight one-second windows after convergence, judged as ConfigBot's own monitor judges them: a second
        # under a 0.2-core quota (100 ms periods) may miss the minimum by a message or two; the configuration
        # holds when the fraction of windows that miss stays within the monitor's retune threshold.
        report = _run_until(first, lambda: _converged_for(first, 9.0), timeout=55)
        conv = [e for e in first.timeline.events if e["kind"] == "converged"]
        assert conv and report["best"] is not None, report["messages"]
        trials = report["trials"]
        assert trials[0]["feasible"], "the probe (hog at its minimum) should be feasible"
        assert trials[1]["feasible"] is False, (
            f"the defaults should break the constraint: {trials[1]['values']}"
        )
        after = [w for w in first.timeline.windows if w.t > conv[0]["t"] + 1]
        missed = sum(not w.core_ok for w in after) / len(after) if after else 1.0
        assert len(after) >= 7 and missed <= spec.monitor.max_violation_fraction, (
            [w.values for w in after],
            [(t["config"], t["values"], t["feasible"]) for t in trials],
        )
        assert not any(e["kind"] == "violation" for e in first.timeline.events)
        # The robot comes back in the same context: the library's configuration, verified, no tuning.
        second = _bot(spec, probe, tmp_path, sampler="gp")
        report2 = _run_until(second, lambda: _converged_for(second, 0.0), timeout=25)
        kinds = [e["kind"] for e in second.timeline.events]
        assert "library_hit" in kinds and "tuning" not in kinds, kinds
        conv2 = next(e for e in second.timeline.events if e["kind"] == "converged")
        assert conv2["trials"] == 0 and conv2["reason"].endswith("library")
        assert conv2["config"] == report["best"]["config"]
        assert report2["state"] == "stopped"
    finally:
        manager.close()


def test_knob_bounds_outside_the_nodes_range_are_a_clear_error(bus, workers, probe, spec_file, tmp_path):
    spec = load_spec(
        spec_file("""
        name: bounds
        constraints: [{rate: /w/out, min: 5}]
        knobs: [{node: /w/w, kind: parameter, name: rate, min: 0.01, max: 5000}]
        """)
    )
    workers.start("w", ns="/w", rate=20.0, work_ms=1.0)
    report = _bot(spec, probe, tmp_path, cgroups=False).run(duration=30)
    assert report["state"] == "error"
    assert "/w/w accepts rate in [0.1, 1000]" in report["error"] and "narrow" in report["error"]
