"""One epoch of a small recipe on 2 ranks × 1 thread (torchrun, gloo) against 1 process × 2 threads.

    python benchmarks/ddp_epoch.py --data-dir ../shared/data --out DIR

Both train the first epoch of ``--recipe`` (p = 8; evaluation on ``--eval`` images) from scratch into their
own run folders under DIR; the figure is each run's epoch time as its metrics.jsonl records it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch_seconds(run: Path) -> float:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["seconds"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="mnist-0.3-cpu")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N images (0: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    sets = ["--set", "epochs=1", "--set", "p_warm_epochs=1", "--set", "p_inf_epochs=0", "--set",
            f"eval_limit={args.eval}", "--set", "pgd_steps=0", "--set", f"train_limit={args.train_limit}"]
    common = ["--recipe", args.recipe, "--data-dir", args.data_dir, "--device", "cpu", "--quiet", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = {
        "1 process x 2 threads": [sys.executable, "-m", "linfdist", "train", str(out / "one"), "--threads", "2"],
        "2 ranks x 1 thread": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-port", str(_free_port()), "-m", "linfdist", "train", str(out / "two"),
                               "--threads", "1"],
    }
    seconds = {}
    for name, command in launch.items():
        subprocess.run(command + common, check=True, env=env)
        seconds[name] = _epoch_seconds(out / ("one" if name.startswith("1") else "two"))
        print(f"{name}: {seconds[name]:.1f} s per epoch")
    ratio = seconds["1 process x 2 threads"] / seconds["2 ranks x 1 thread"]
    print(f"2 ranks x 1 thread is {ratio:.2f}x the speed of 1 process x 2 threads")
    result = {"recipe": args.recipe, "train_limit": args.train_limit, "seconds": seconds, "speed_ratio": ratio}
    (out / "ddp_epoch.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
