"""Datasets from local files only (MNIST, Fashion-MNIST, CIFAR-10).

The readers live in ``linfdist.verify.datasets`` so that the independent verifier reads
test sets without any core code; training and the CLI use them through this module.
"""

from linfdist.verify.datasets import (  # noqa: F401
    DATASETS, ENV_VAR, INPUT_SHAPES, SPLITS, DatasetError, bundled_dir, load_dataset, read_idx, resolve_data_dir,
)

__all__ = ["DATASETS", "ENV_VAR", "INPUT_SHAPES", "SPLITS", "DatasetError", "bundled_dir", "load_dataset", "read_idx",
           "resolve_data_dir"]
