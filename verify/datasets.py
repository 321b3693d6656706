"""Datasets from local files only: MNIST, Fashion-MNIST (IDX) and CIFAR-10 (npz or pickle batches).

Nothing is ever downloaded. Each dataset is looked up under a data directory
(``--data-dir``, else the ``LINFDIST_DATA`` variable) in these layouts:

- ``<dir>/mnist/t10k-images-idx3-ubyte.gz`` (also ``fashion-mnist/``, ``cifar-10/*.npz``),
  the layout of this project's shared data;
- the same files directly in ``<dir>``;
- torchvision's on-disk layout (``MNIST/raw``, ``FashionMNIST/raw``, ``cifar-10-batches-py``).

With no directory configured, the MNIST test set bundled in the package is used.
Images come back as uint8 [N, C, H, W], labels as int64 [N]. Numpy only.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

ENV_VAR = "LINFDIST_DATA"
SPLITS = ("train", "test")


class DatasetError(RuntimeError):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class _IdxSpec:
    folder: str
    torchvision_folder: str

    def files(self, split: str) -> tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


_IDX = {"mnist": _IdxSpec("mnist", "MNIST"), "fashion-mnist": _IdxSpec("fashion-mnist", "FashionMNIST")}
_CIFAR_NPZ = {"test": ["cifar10_test_uint8.npz"], "train": [f"cifar10_train_batch{i}_uint8.npz" for i in range(1, 6)]}
_CIFAR_PICKLE = {"test": ["test_batch"], "train": [f"data_batch_{i}" for i in range(1, 6)]}



@dataclass(frozen=True)
class DatasetInfo:
    """What every part of linfdist knows about a dataset (this table is the one place it is written)."""

    name: str  #: the id used everywhere (recipes, config.json, ONNX metadata, --dataset)
    title: str  #: as papers write it
    hub_id: str  #: its Hugging Face datasets id (model cards)
    shape: tuple[int, int, int]  #: one image, [C, H, W]
    mean: tuple[float, ...]  #: the input normalisation the authors' code uses (per channel, or one value)
    std: tuple[float, ...]
    classes: tuple[str, ...]  #: label i's name (id2label)
    sizes: dict  #: images per split


_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot")
DATASET_TABLE = {
    info.name: info for info in (
        DatasetInfo("mnist", "MNIST", "ylecun/mnist", (1, 28, 28), (0.1307,), (0.3081,),
                    tuple(str(d) for d in range(10)), {"train": 60000, "test": 10000}),
        DatasetInfo("fashion-mnist", "Fashion-MNIST", "zalando-datasets/fashion_mnist", (1, 28, 28), (0.2860,),
                    (0.3520,), _FASHION_CLASSES, {"train": 60000, "test": 10000}),
        DatasetInfo("cifar10", "CIFAR-10", "uoft-cs/cifar10", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2009,),
                    _CIFAR_CLASSES, {"train": 50000, "test": 10000}),
    )
}
DATASETS = tuple(DATASET_TABLE)
INPUT_SHAPES = {name: info.shape for name, info in DATASET_TABLE.items()}


def dataset_info(name: str) -> DatasetInfo:
    """The table's row for ``name``, or a DatasetError naming the known ones."""
    if name not in DATASET_TABLE:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASET_TABLE[name]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The directory to search: the argument, else $LINFDIST_DATA, else None (bundled data only)."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data-dir" if data_dir is not None else ENV_VAR
        raise DatasetError(f"data directory {path} (from {source}) does not exist")
    return path


def bundled_dir() -> Path:
    """The package's own copy of the MNIST test set."""
    return Path(str(resources.files("linfdist") / "datasets" / "mnist"))


def load_dataset(name: str, split: str = "test", data_dir: str | os.PathLike | None = None):
    """(images uint8 [N, C, H, W], labels int64 [N]) of one split, read from local files."""
    dataset_info(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    root = resolve_data_dir(data_dir)
    if name == "cifar10":
        if root is None:
            raise DatasetError(f"cifar10 is not bundled: pass --data-dir or set {ENV_VAR}")
        return _load_cifar(root, split)
    spec = _IDX[name]
    if root is None:
        if name == "mnist" and split == "test":
            return _load_idx_pair(bundled_dir(), spec, split)
        raise DatasetError(f"{name} {split} is not bundled: pass --data-dir or set {ENV_VAR}")
    for folder in (root / spec.folder, root, root / spec.torchvision_folder / "raw"):
        if _find_idx(folder, spec.files(split)[0]) is not None:
            return _load_idx_pair(folder, spec, split)
    wanted = spec.files(split)[0] + ".gz"
    raise DatasetError(
        f"{name} {split}: {wanted} not found in {root / spec.folder}, {root} or {root / spec.torchvision_folder / 'raw'}"
    )


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_pair(folder: Path, spec: _IdxSpec, split: str):
    image_stem, label_stem = spec.files(split)
    images_path, labels_path = _find_idx(folder, image_stem), _find_idx(folder, label_stem)
    if labels_path is None:
        raise DatasetError(f"{folder / (label_stem + '.gz')} not found (labels for {images_path})")
    images = read_idx(images_path, expected_dims=3)
    labels = read_idx(labels_path, expected_dims=1)
    info = DATASET_TABLE[spec.folder]
    n = info.sizes[split]
    if images.shape != (n, *info.shape[1:]):
        raise DatasetError(f"{images_path}: expected {n} images of {info.shape[1:]}, got shape {images.shape}")
    if labels.shape != (n,):
        raise DatasetError(f"{labels_path}: expected {n} labels, got shape {labels.shape}")
    return images.reshape(n, *info.shape), _checked_labels(labels_path, labels)


def _checked_labels(path: Path, labels: np.ndarray) -> np.ndarray:
    """Labels as int64, or a DatasetError naming the first one outside 0..9 and where it is."""
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise DatasetError(f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..9 "
                           f"({len(bad)} such label(s))")
    return labels.astype(np.int64)


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not), checking magic, dims and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(f"{path}: cannot read ({err}); expected a gzipped IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    dims = raw[3]
    if dims != expected_dims:
        raise DatasetError(f"{path}: expected an IDX file with {expected_dims} dimension(s), got {dims}")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"{path}: IDX header says shape {shape} but the file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _load_cifar(root: Path, split: str):
    for folder in (root / "cifar-10", root):
        paths = [folder / f for f in _CIFAR_NPZ[split]]
        if paths[0].is_file():
            parts = [_read_cifar_npz(p) for p in paths]
            break
    else:
        folder = root / "cifar-10-batches-py"
        paths = [folder / f for f in _CIFAR_PICKLE[split]]
        if not paths[0].is_file():
            raise DatasetError(
                f"cifar10 {split}: {_CIFAR_NPZ[split][0]} not found in {root / 'cifar-10'} or {root}, "
                f"nor {paths[0]} (torchvision layout)"
            )
        parts = [_read_cifar_pickle(p) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    expected = DATASET_TABLE["cifar10"].sizes[split]
    if len(x) != expected:
        raise DatasetError(f"cifar10 {split}: expected {expected} images in {folder}, got {len(x)}")
    return x, y


def _check_cifar(path: Path, x: np.ndarray, y: np.ndarray):
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
        raise DatasetError(f"{path}: expected uint8 images [N, 32, 32, 3] and N labels")
    return x, _checked_labels(path, y)


def _read_cifar_npz(path: Path):
    if not path.is_file():
        raise DatasetError(f"{path} not found (one of the CIFAR-10 batch files)")
    try:
        with np.load(path) as f:
            x, y = f["x"], f["y"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise DatasetError(f"{path}: cannot read ({err}); expected an npz with arrays x [N,32,32,3] and y [N]") from None
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DatasetError(f"{path}: expected x of shape [N, 32, 32, 3], got {x.shape}")
    return _check_cifar(path, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y)


#: What a CIFAR-10 python batch may reference: numpy arrays and scalars, nothing that runs code.
_PICKLE_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                   for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles data only: any other global (a function, a class that runs code) is refused."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path):
    if not path.is_file():
        raise DatasetError(f"{path} not found (one of the CIFAR-10 python batches)")
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
    except (OSError, KeyError, TypeError, pickle.UnpicklingError, EOFError) as err:
        raise DatasetError(f"{path}: cannot read ({err}); expected a CIFAR-10 python batch") from None
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return _check_cifar(path, x, np.asarray(labels))
