"""Workers' learning rate per method for `tether bench halos` (HALoS, arXiv 2506.04531, and its baselines),
chosen on a seed the benchmark does not report (`TUNING_SEED`), at the benchmark's own workload and cap.

Each method gets the same kind of grid (x2 steps, extended while its best lies on an edge) and keeps
the lr with the lowest validation loss at the end of its run (the cap or the token budget); the server-side hyperparameters stay the reference's. Runs are cached, so an
interrupted sweep resumes. `python -m tether.bench.halos.tune [--out DIR] [--processes N]` writes
DIR/halos_tuning.json (every run's loss at the cap and time to the sync-best loss) and prints the choice.
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from tether.bench.halos import _WORKLOAD, TOKEN_BUDGET, TUNING_SEED, Setup, _cache_key, run_job
from tether.cloud.halos import Curve

__all__ = ["GRID", "main"]

_LR_FLOOR, _LR_CEIL = 1e-4, 0.1
# x2 steps around each method's starting point; a best on an edge extends the grid that way (main)
GRID: dict[str, tuple[float, ...]] = {
    "sync": (3e-3, 6e-3, 1.2e-2),
    "halos": (7.5e-4, 1.5e-3, 3e-3),
    "async_local_sgd": (7.5e-4, 1.5e-3, 3e-3),
    "diloco": (6e-3, 1.2e-2, 2.4e-2),
}


def _run(
    todo: list[tuple[str, float]],
    setup: Setup,
    cache: Path,
    curves: dict[tuple[str, float], Curve],
    processes: int,
) -> None:
    for m, lr in list(todo):  # finished earlier: read back
        if (path := cache / f"{m}-{lr:g}.json").exists():
            curves[(m, lr)] = Curve(**json.loads(path.read_text()))
            todo.remove((m, lr))
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, m, TUNING_SEED, setup, lr): (m, lr) for m, lr in todo}
        for fut in as_completed(futures):
            m, lr = futures[fut]
            c = curves[(m, lr)] = fut.result()
            (cache / f"{m}-{lr:g}.json").write_text(json.dumps(asdict(c)))
            print(
                f"{m} lr {lr:g}: loss {c.final_loss:.4f} at the cap ({c.cpu_seconds:.0f} s CPU)", flush=True
            )


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--methods", default=",".join(GRID), help="Comma-separated methods to tune.")
    args = ap.parse_args(argv)
    setup = Setup(
        _WORKLOAD, sync_steps=2000, token_budget=TOKEN_BUDGET, eval_points=100, seeds=(TUNING_SEED,)
    )
    # runs of another setup (or regime: the topology file) are kept apart; one file per method and lr
    cache = args.out / "halos_tuning_runs" / _cache_key(setup)
    cache.mkdir(parents=True, exist_ok=True)
    curves: dict[tuple[str, float], Curve] = {}
    grid = {m: sorted(GRID[m]) for m in args.methods.split(",")}
    todo = [(m, lr) for m, lrs in grid.items() for lr in lrs]
    while todo:
        _run(todo, setup, cache, curves, args.processes)
        # a best lr on the edge of its grid may not be the best: extend that side by one x2 step, and again
        todo = []
        for m, lrs in grid.items():
            best = min(lrs, key=lambda lr, m=m: curves[(m, lr)].final_loss)
            if best == lrs[0] and best / 2 >= _LR_FLOOR:
                lrs.insert(0, best / 2)
                todo.append((m, best / 2))
            elif best == lrs[-1] and best * 2 <= _LR_CEIL:
                lrs.append(best * 2)
                todo.append((m, best * 2))
    best = {m: min(grid[m], key=lambda lr, m=m: curves[(m, lr)].final_loss) for m in grid}
    target = curves[("sync", best["sync"])].final_loss if "sync" in best else -math.inf
    table = {
        m: {
            f"{lr:g}": {
                "final_loss": curves[(m, lr)].final_loss,
                "time_to_sync_best_s": (
                    t if math.isfinite(t := curves[(m, lr)].time_to_target(target)) else None
                ),
            }
            for lr in grid[m]
        }
        for m in grid
    }
    doc = {
        "seed": TUNING_SEED,
        "criterion": "lowest validation loss at the end of the run (cap or token budget)",
        "best_lr": best,
        "runs": table,
    }
    (args.out / "halos_tuning.json").write_text(json.dumps(doc, indent=1))
    for m in grid:
        print(m, "best lr", best[m], {k: round(v["final_loss"], 4) for k, v in table[m].items()})
    return best


if __name__ == "__main__":
    main()
