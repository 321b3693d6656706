"""ONNX Runtime CPU against torch CPU on the MNIST test set, in the same run (median of --repeat).

    python benchmarks/bench_onnx.py [CKPT_DIR] [--repeat 5] [--threads 2]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench_lp_dist import median_seconds  # this folder is on sys.path when run as a script
from linfdist.data import load_dataset
from linfdist.evaluate import pixels
from linfdist.export import export_checkpoint, session
from linfdist.models import load_pretrained
from linfdist.zoo import bundled_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="checkpoint folder (default: the bundled model)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads for both torch and ORT")
    args = parser.parse_args()
    folder = Path(args.model) if args.model else bundled_model_dir()
    torch.set_num_threads(args.threads)
    images, _ = load_dataset("mnist", "test")
    x = pixels(images)
    model = load_pretrained(folder).eval()
    with tempfile.TemporaryDirectory() as tmp:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        path = export_checkpoint(folder, Path(tmp) / "model.onnx")
        sess_threads = session(path, providers=["CPUExecutionProvider"], sess_options=options)
        with torch.no_grad():
            t_torch = median_seconds(lambda: model(x), "cpu", args.repeat)
            logits = model(x).numpy()
        t_ort = median_seconds(lambda: sess_threads.run(None, {"pixels": x.numpy()}), "cpu", args.repeat)
        same = np.array_equal(sess_threads.run(None, {"pixels": x.numpy()})[0], logits)
    n = len(x)
    print(f"{n} MNIST test images, {args.threads} threads, median of {args.repeat}")
    print(f"torch CPU   {t_torch:6.2f} s  {n / t_torch:8.0f} img/s")
    print(f"ORT CPU     {t_ort:6.2f} s  {n / t_ort:8.0f} img/s  ({t_ort / t_torch:.2f}x torch's time; "
          f"logits bitwise equal: {same})")


if __name__ == "__main__":
    main()
