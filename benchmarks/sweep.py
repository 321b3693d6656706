"""Where extra width or extra epochs pay most: one recipe trained at several widths and schedule
lengths, each certified by ``linfdist verify`` on the full test set.

    python benchmarks/sweep.py --recipe mnist-0.3-cpu --widths 128,256,512 --epochs 10,20,40 \\
        --data-dir ../shared/data --out DIR

Each configuration is a run folder DIR/w{width}-e{epochs} trained by ``linfdist train --epochs``,
which scales the recipe's phases (p = 8 epochs, p = ∞ epochs, the held learning rate) with the
epoch count (``Recipe.with_epochs``). The sweep resumes: a finished configuration (its verify.json)
is kept, a started one continues from its checkpoint (``--resume``). Results go to DIR/sweep.json and
stdout as a table
with the training time (the sum of the epochs' seconds in metrics.jsonl) and the certified points
gained per CPU hour over the configuration one step smaller. SIGTERM or Ctrl-C stops the sweep and the
training under it, which saves its checkpoint first; the same command then resumes.

``--jobs N`` runs N configurations at a time, each on its share of the cores (``--threads`` for training
and verification): on one 2-core machine two one-thread runs trained 1.55–2.02 times the steps per hour of
one two-thread run (docs/training.md, "One run per core"). A failed configuration leaves the others running;
the sweep then exits with its failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: The steps (trainings, verifications) running now, and whether the sweep has been told to stop.
_steps: set = set()
_stopping = threading.Event()


def run_one(args, width: int, epochs: int, threads: int | None = None) -> dict:
    """Train, certify and read back one configuration (each step on ``threads`` threads where given)."""
    folder = args.out / f"w{width}-e{epochs}"
    report = folder / "verify.json"
    if not report.is_file():
        sets = [f"width={width}", *args.set]
        share = ["--threads", str(threads)] if threads else []
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), LINFDIST_VERIFY_THREADS=str(threads)) if threads else None
        command = [sys.executable, "-m", "linfdist", "train", "--recipe", args.recipe, "--epochs", str(epochs),
                   "--data-dir", str(args.data_dir), "--out", str(folder), "--quiet", *share,
                   *[x for s in sets for x in ("--set", s)]]
        if (folder / "checkpoint.pt").is_file() and not (folder / "model" / "config.json").is_file():
            command.append("--resume")
        if not (folder / "model" / "config.json").is_file():
            _run(command, env)
        _run([sys.executable, "-m", "linfdist", "verify", str(folder / "model"), "--data-dir",
              str(args.data_dir), "--runtimes", "reference", "--json", str(report), "--quiet", *share], env)
    verified = json.loads(report.read_text())
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {"width": width, "epochs": epochs, "train_seconds": sum(r["seconds"] for r in records),
            "device": records[-1]["device"], "finished": records[-1]["finished"],
            "clean": verified["clean_accuracy"], "certified": verified["certified_accuracy"], "n": verified["n"]}


def _run(command: list[str], env: dict | None = None) -> None:
    """Run one step of the sweep to its end (under ``_stoppable``, which stops and waits for it)."""
    if _stopping.is_set():
        raise SystemExit("sweep: stopped before a step; the same sweep command resumes")
    step = subprocess.Popen(command, env=env)
    _steps.add(step)
    code = step.wait()  # an interrupted wait leaves the step in _steps for _stoppable to wait for
    _steps.discard(step)
    if code:
        raise SystemExit(f"sweep: `{' '.join(command[1:5])} ...` exited with status {code}; "
                         "the same sweep command resumes")


def _stoppable(work):
    """``work()``, with SIGTERM to the sweep passed to every running step as the SIGINT that makes ``linfdist
    train`` save a checkpoint and stop (Ctrl-C reaches the steps anyway: same process group); either way the
    sweep starts no further step and exits only after the running ones have: a step left running would write
    its run folder under the sweep that resumes it."""
    def stop(*_):
        _stopping.set()
        for step in list(_steps):
            step.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return work()
    except KeyboardInterrupt:
        _stopping.set()
        for step in list(_steps):
            step.wait()
        print("sweep: stopped; the same sweep command resumes", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_all(args, configs: list[tuple[int, int]], jobs: int, on_row) -> list[dict]:
    """Every configuration's row, in the order given, ``jobs`` at a time; ``on_row(rows)`` after each one
    ends with the rows ended so far. A failure stops nothing already running; it is raised at the end."""
    if jobs == 1:
        rows = []
        for width, epochs in configs:
            rows.append(run_one(args, width, epochs))
            on_row(rows)
        return rows
    threads = max(1, _cores() // jobs)
    done: dict[tuple[int, int], dict] = {}
    failure = None
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_one, args, w, e, threads): (w, e) for w, e in configs}
        try:
            for future, config in futures.items():  # in order; each result() waits for its own configuration
                try:
                    done[config] = future.result()
                except SystemExit as error:
                    failure = failure or error
                    continue
                on_row([done[c] for c in configs if c in done])
        except BaseException:  # Ctrl-C or a bug: no further step starts, the running ones end (the pool waits)
            _stopping.set()
            for future in futures:
                future.cancel()
            raise
    if failure is not None:
        raise failure
    return [done[c] for c in configs]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--widths", required=True, help="comma-separated widths")
    parser.add_argument("--epochs", required=True, help="comma-separated epoch counts")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="more recipe overrides")
    parser.add_argument("--jobs", type=int, default=1,
                        help="configurations trained at a time, each on its share of the cores (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    from linfdist.train import get_recipe

    get_recipe(args.recipe)  # an unknown recipe fails here, before any run folder is made
    widths = [int(v) for v in args.widths.split(",")]
    epoch_counts = [int(v) for v in args.epochs.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    def write(rows):
        (args.out / "sweep.json").write_text(json.dumps({"recipe": args.recipe, "set": args.set, "rows": rows},
                                                        indent=2) + "\n")

    configs = [(w, e) for w in widths for e in epoch_counts]
    rows = _stoppable(lambda: run_all(args, configs, args.jobs, write))
    print("| width | epochs | training | clean | certified | +points / CPU h vs fewer epochs | vs narrower |")
    print("|---|---|---|---|---|---|---|")
    by = {(r["width"], r["epochs"]): r for r in rows}
    for r in rows:
        gains = []
        for other in (_smaller(epoch_counts, r["epochs"], lambda e, r=r: (r["width"], e)),
                      _smaller(widths, r["width"], lambda w, r=r: (w, r["epochs"]))):
            base = by.get(other) if other else None
            extra = (r["train_seconds"] - base["train_seconds"]) / 3600 if base else 0
            gains.append(f"{(r['certified'] - base['certified']) / extra:+.1f}" if base and extra > 0 else "-")
        print(f"| {r['width']} | {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {r['clean']:.2f}% | "
              f"{r['certified']:.2f}% | {gains[0]} | {gains[1]} |")
    return 0


def _smaller(values: list[int], value: int, key):
    below = [v for v in values if v < value]
    return key(max(below)) if below else None


if __name__ == "__main__":
    sys.exit(main())
