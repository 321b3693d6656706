"""Write ℓ∞-ball robustness properties in VNN-LIB (the VNN-COMP format other verifiers read).

One file per sample: the input box [x − ε, x + ε] ∩ [0, 1] over the flattened input
X_0 … X_{K−1} (the ONNX input in row-major order) and, as VNN-LIB states the unsafe
region, the disjunction "some other logit Y_j ≥ Y_label". A verifier that proves the
property unsatisfiable certifies the sample. ``instances.csv`` lists (onnx, vnnlib,
timeout) rows as VNN-COMP benchmarks do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from linfdist.verify.certificates import DOMAIN

TIMEOUT_SECONDS = 60


def property_text(x: np.ndarray, label: int, eps: float, classes: int, comment: str = "") -> str:
    """The VNN-LIB property of one float32 sample (any shape; flattened row-major)."""
    flat = x.astype(np.float64).ravel()
    lower = np.clip(np.nextafter(flat - eps, -np.inf), *DOMAIN)
    upper = np.clip(np.nextafter(flat + eps, np.inf), *DOMAIN)
    lines = [f"; {comment}".rstrip(), f"; label {label}, eps {eps!r}, input box clipped to {list(DOMAIN)}", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(flat))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(classes)] + [""]
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(classes) if j != label)
    lines += ["", f"(assert (or {others}))", ""]
    return "\n".join(lines)


def write_properties(folder, onnx_path, pixels: np.ndarray, labels: np.ndarray, eps: float, classes: int,
                     first_index: int = 0, dataset: str = "") -> Path:
    """Write prop_<index>.vnnlib per sample, a copy of the model, and instances.csv into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / Path(onnx_path).name
    if not model.exists() or not model.samefile(onnx_path):
        shutil.copyfile(onnx_path, model)
    rows = []
    for i, (x, y) in enumerate(zip(pixels, labels)):
        index = first_index + i
        name = f"prop_{index:05d}.vnnlib"
        text = property_text(x, int(y), eps, classes, f"{dataset} test sample {index}")
        (folder / name).write_text(text)
        rows.append(f"{model.name},{name},{TIMEOUT_SECONDS}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder
