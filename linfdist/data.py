"""Datasets from local files only (MNIST, Fashion-MNIST, CIFAR-10), and the one table of what each is.

The readers and the table live in ``linfdist.verify.datasets`` so that the independent verifier
reads test sets without any core code; training, the zoo and the CLI use them through this module.
"""

from linfdist.verify.datasets import (  # noqa: F401
    DATASET_TABLE, DATASETS, ENV_VAR, INPUT_SHAPES, SPLITS, DatasetError, DatasetInfo, bundled_dir, dataset_info,
    load_dataset, read_idx, resolve_data_dir,
)

__all__ = ["DATASET_TABLE", "DATASETS", "ENV_VAR", "INPUT_SHAPES", "SPLITS", "DatasetError", "DatasetInfo",
           "bundled_dir", "dataset_info", "load_dataset", "read_idx", "resolve_data_dir"]
