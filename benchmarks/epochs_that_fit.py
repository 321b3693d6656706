"""How many epochs of a recipe fit in a time budget, from a short probe run's metrics.jsonl.

    python benchmarks/epochs_that_fit.py PROBE/metrics.jsonl RECIPE SECONDS   ->   "EPOCH_SECONDS EPOCHS"

The probe's first epoch (compiling and autotuning the kernels) is left out. An epoch's ``seconds`` leaves out
its evaluation, so the log's clock (``finished``, whole seconds) is taken where it says more. EPOCHS is 90% of
what fits, at most the recipe's own schedule (benchmarks/gpu_train.sh sizes a device call's run with it).
"""

from __future__ import annotations

import sys
from datetime import datetime

MARGIN = 0.9  # of the budget, for epochs slower than the probe's and the final checkpoint


def epoch_seconds(records: list[dict]) -> float:
    """The probe's epoch time: its slowest timed epoch after the first, or the log's clock where it says more."""
    timed = records[1:]
    if len(timed) < 2:
        raise ValueError(f"the probe needs 3 epochs or more, it has {len(records)}")
    ends = [datetime.fromisoformat(r["finished"].replace("Z", "+00:00")).timestamp() for r in timed]
    return max(max(r["seconds"] for r in timed), (ends[-1] - ends[0] + 1) / (len(timed) - 1))


def epochs_that_fit(records: list[dict], recipe_epochs: int, budget_seconds: float) -> int:
    return min(recipe_epochs, int(MARGIN * budget_seconds / epoch_seconds(records)))


def main(argv=None) -> int:
    from linfdist.curves import read_metrics
    from linfdist.recipe import get_recipe

    metrics, recipe, budget = argv or sys.argv[1:]
    records = read_metrics(metrics)
    print(f"{epoch_seconds(records):.2f} {epochs_that_fit(records, get_recipe(recipe).epochs, float(budget))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
