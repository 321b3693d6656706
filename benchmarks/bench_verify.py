"""The independent verifier (float64 numpy) against the torch certification path on the MNIST test set.

Both certify the same 10k images at the model's ε (margin + IBP) in the same run, on the
same threads; prints each time and the ratio (issue 8 aims for <= 3x).

    python benchmarks/bench_verify.py [CKPT_DIR] [--threads 2] [--limit N]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and for the verifier")
    parser.add_argument("--limit", type=int, default=10000)
    args = parser.parse_args()
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.threads]))  # the verifier's pool sizes to this
    import torch

    from linfdist.data import load_dataset
    from linfdist.evaluate import evaluate
    from linfdist.export import export_checkpoint
    from linfdist.models import load_pretrained
    from linfdist.verify.compare import verify_dataset
    from linfdist.verify.graph import load_graph
    from linfdist.verify.runtimes import REFERENCE, Runtime
    from linfdist.zoo import bundled_model_dir

    torch.set_num_threads(args.threads)
    folder = Path(args.model) if args.model else bundled_model_dir()
    images, labels = load_dataset("mnist", "test")
    images, labels = images[: args.limit], labels[: args.limit]
    model = load_pretrained(folder)
    eps = model.config.eps
    with tempfile.TemporaryDirectory() as tmp:
        graph = load_graph(export_checkpoint(folder, Path(tmp) / "model.onnx"))
        start = time.perf_counter()
        report = verify_dataset(graph, images, labels, eps, "mnist", [Runtime(REFERENCE, "float64")], progress=False)
        t_verify = time.perf_counter() - start
    start = time.perf_counter()
    ev = evaluate(model, images, labels, eps, progress=False)
    t_torch = time.perf_counter() - start
    n = len(images)
    print(f"{n} MNIST test images, eps {eps:g}, {args.threads} threads, {time.strftime('%Y-%m-%d')}")
    print(f"torch float32 certify   {t_torch:6.1f} s  certified {100 * ev.certified / n:.2f}%")
    print(f"verifier float64 numpy  {t_verify:6.1f} s  certified {report.certified_accuracy:.2f}%  "
          f"({t_verify / t_torch:.2f}x torch's time)")


if __name__ == "__main__":
    main()
