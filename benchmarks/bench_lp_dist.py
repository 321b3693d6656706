"""Benchmark the ℓp-dist backends: the same as ``linfdist bench`` (run with --help for options).

Examples:
    python benchmarks/bench_lp_dist.py                       # defaults for this machine
    python benchmarks/bench_lp_dist.py --shapes paper --passes fwd --p inf   # CPU target
"""

import sys

from linfdist.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
