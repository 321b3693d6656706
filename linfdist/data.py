"""Datasets from local files only (MNIST, Fashion-MNIST, CIFAR-10), the one table of what each is, and how
a radius ε in their pixel units is written.

The readers and the table live in ``linfdist.verify.datasets`` so that the independent verifier
reads test sets without any core code; training, the zoo and the CLI use them through this module.
"""

import math

from linfdist.verify.datasets import (  # noqa: F401
    DATASET_TABLE,
    DATASETS,
    ENV_VAR,
    INPUT_SHAPES,
    SPLITS,
    DatasetError,
    DatasetInfo,
    bundled_dir,
    dataset_info,
    load_dataset,
    read_idx,
    resolve_data_dir,
)

__all__ = ["DATASET_TABLE", "DATASETS", "ENV_VAR", "INPUT_SHAPES", "SPLITS", "DatasetError", "DatasetInfo",
           "bundled_dir", "dataset_info", "eps_text", "load_dataset", "pixel_range_problem", "read_idx",
           "resolve_data_dir"]


def eps_text(eps: float) -> str:
    """ε as papers write it: 0.3, or 8/255 where a short decimal cannot say it."""
    short = f"{eps:g}"
    if len(short) <= 5 or round(eps * 255) == 0 or not math.isclose(eps * 255, round(eps * 255), rel_tol=1e-9):
        return short
    return f"{round(eps * 255)}/255"


def pixel_range_problem(low: float, high: float) -> str | None:
    """What is wrong with pixels spanning [low, high] for the certificates' domain [0, 1] (the fix named), or None."""
    if 0 <= low and high <= 1:
        return None
    fix = " (0–255 values: divide by 255)" if 0 <= low and high <= 255 else ""
    return f"pixel values must lie in [0, 1], found [{low:g}, {high:g}]{fix}"
