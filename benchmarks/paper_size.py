"""The papers' net sizes through export and the verifier: time per runtime and peak memory.

    python benchmarks/paper_size.py --net mnist --data-dir ../shared/data --out DIR [--limit N] [--runtimes LIST]

Builds an identity-initialised random net of the papers' size (5 × 5120 on MNIST, 6 × 5120 on CIFAR-10:
what matters here is size, not accuracy), saves it, and runs ``linfdist verify`` on it in a child process
(the JSON report and the child's peak resident memory go to DIR/<net>-5120.json). The ε is the papers'
(0.3 on MNIST, 8/255 on CIFAR-10).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

NETS = {"mnist": ("mnist", 5, 0.3), "cifar10": ("cifar10", 6, 8 / 255)}


def build(net: str, folder: Path, width: int) -> Path:
    import torch

    from linfdist.data import dataset_info
    from linfdist.models import LinfDistNet, LinfDistNetConfig

    dataset, depth, eps = NETS[net]
    data = dataset_info(dataset)
    torch.manual_seed(0)
    model = LinfDistNet(LinfDistNetConfig(input_shape=list(data.shape), depth=depth, width=width, mean=list(data.mean),
                                          std=list(data.std), dataset=dataset, eps=eps))
    model.eval().save_pretrained(folder)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=NETS, required=True)
    parser.add_argument("--width", type=int, default=5120)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="verify only the first N test images (default: all)")
    parser.add_argument("--runtimes", default="all", help="passed to linfdist verify (default: all)")
    parser.add_argument("--decision-only", action="store_true", help="passed to linfdist verify")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.net}-{NETS[args.net][1]}x{args.width}"
    folder = args.out / name
    if not (folder / "config.json").is_file():
        build(args.net, folder, args.width)
    report = args.out / f"{name}-verify.json"
    command = [sys.executable, "-m", "linfdist", "verify", str(folder), "--data-dir", str(args.data_dir), "--quiet",
               "--json", str(report), *(["--limit", str(args.limit)] if args.limit else []),
               *(["--decision-only"] if args.decision_only else ["--runtimes", args.runtimes])]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    verified = json.loads(report.read_text())
    summary = {"net": name, "command": " ".join(command), "wall_seconds": round(seconds, 1),
               "peak_rss_gib": round(peak_kib / 2**20, 2), "n": verified["n"], "computed": verified["computed"],
               "runtimes": {r["name"]: r["seconds"] for r in verified["runtimes"] if r.get("seconds") is not None}}
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
