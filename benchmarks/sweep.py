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
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path


def run_one(args, recipe, width: int, epochs: int) -> dict:
    folder = args.out / f"w{width}-e{epochs}"
    report = folder / "verify.json"
    if not report.is_file():
        sets = [f"width={width}", *args.set]
        command = [sys.executable, "-m", "linfdist", "train", "--recipe", args.recipe, "--epochs", str(epochs),
                   "--data-dir", str(args.data_dir), "--out", str(folder), "--quiet",
                   *[x for s in sets for x in ("--set", s)]]
        if (folder / "checkpoint.pt").is_file() and not (folder / "model" / "config.json").is_file():
            command.append("--resume")
        if not (folder / "model" / "config.json").is_file():
            _run(command)
        _run([sys.executable, "-m", "linfdist", "verify", str(folder / "model"), "--data-dir",
              str(args.data_dir), "--runtimes", "reference", "--json", str(report), "--quiet"])
    verified = json.loads(report.read_text())
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {"width": width, "epochs": epochs, "train_seconds": sum(r["seconds"] for r in records),
            "device": records[-1]["device"], "finished": records[-1]["finished"],
            "clean": verified["clean_accuracy"], "certified": verified["certified_accuracy"], "n": verified["n"]}


def _run(command: list[str]) -> None:
    """Run one step of the sweep to its end. SIGTERM to the sweep reaches the step as the SIGINT that makes
    ``linfdist train`` save a checkpoint and stop (Ctrl-C reaches it anyway: same process group), and the
    sweep waits for that: a step left running would write the run folder under the sweep that resumes it."""
    child = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.wait()
        print("sweep: stopped; the same sweep command resumes", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code:
        raise SystemExit(f"sweep: `{' '.join(command[1:5])} ...` exited with status {code}; "
                         "the same sweep command resumes")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--widths", required=True, help="comma-separated widths")
    parser.add_argument("--epochs", required=True, help="comma-separated epoch counts")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="more recipe overrides")
    args = parser.parse_args(argv)
    from linfdist.train import get_recipe

    recipe = get_recipe(args.recipe)
    widths = [int(v) for v in args.widths.split(",")]
    epoch_counts = [int(v) for v in args.epochs.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for width in widths:
        for epochs in epoch_counts:
            rows.append(run_one(args, recipe, width, epochs))
            (args.out / "sweep.json").write_text(json.dumps({"recipe": args.recipe, "set": args.set,
                                                              "rows": rows}, indent=2) + "\n")
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
