"""Write ℓ∞-ball robustness properties in VNN-LIB (the VNN-COMP format other verifiers read).

One file per sample: the input box [x − ε, x + ε] ∩ [0, 1] over the flattened input
X_0 … X_{K−1} (the ONNX input in row-major order) and, as VNN-LIB states the unsafe
region, the disjunction "some other logit Y_j ≥ Y_label". A verifier that proves the
property unsatisfiable certifies the sample. Beside a copy of the model goes its inlined form
(``*.inlined.onnx``: the LpDist functions replaced by their bodies, standard ops only), which
``instances.csv`` lists in (onnx, vnnlib, timeout) rows as VNN-COMP benchmarks do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import inliner, version_converter

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


#: The newest opset whose ReduceMax onnx2torch 1.5 reads (checked by a test).
STANDARD_OPSET = 17


def standard_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its local functions inlined and no custom domain left, at opset STANDARD_OPSET or lower."""
    flat = inliner.inline_local_functions(model)
    version = next(o.version for o in flat.opset_import if o.domain in ("", "ai.onnx"))
    keep = [o for o in flat.opset_import if o.domain in ("", "ai.onnx")]
    del flat.opset_import[:]
    flat.opset_import.extend(keep)
    return version_converter.convert_version(flat, STANDARD_OPSET) if version > STANDARD_OPSET else flat


def write_properties(folder, onnx_path, pixels: np.ndarray, labels: np.ndarray, eps: float, classes: int,
                     first_index: int = 0, dataset: str = "") -> Path:
    """Write prop_<index>.vnnlib per sample, a copy of the model and its inlined form, and instances.csv into
    ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / Path(onnx_path).name
    if not model.exists() or not model.samefile(onnx_path):
        shutil.copyfile(onnx_path, model)
    inlined = model.with_name(model.stem + ".inlined.onnx")
    onnx.save_model(standard_ops(onnx.load(str(model))), str(inlined))
    rows = []
    for i, (x, y) in enumerate(zip(pixels, labels)):
        index = first_index + i
        name = f"prop_{index:05d}.vnnlib"
        text = property_text(x, int(y), eps, classes, f"{dataset} test sample {index}")
        (folder / name).write_text(text)
        rows.append(f"{inlined.name},{name},{TIMEOUT_SECONDS}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder
