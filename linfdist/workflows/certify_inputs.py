"""Certify a user's own inputs (PNG/JPEG images, .npy/.npz arrays) with the independent verifier.

Preprocessing is explicit and checked: an image is read as grayscale ("L") or RGB and must have
the model's channels and size (``resize`` resamples it to the model's size); arrays must hold
pixel values in [0, 1]. Per input the verifier gives the prediction, the top-2 logit margin, the
largest radius each certificate proves (margin and IBP, by bisection) and the decision at ε.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from linfdist.data import pixel_range_problem
from linfdist.errors import LinfdistError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
#: Bisection steps for a certified radius: to 2^-16 of the pixel range.
RADIUS_STEPS = 16
_MODES = {1: "L", 3: "RGB"}


@dataclass
class Input:
    """One input to certify: where it came from and its pixels [C, H, W] in [0, 1]."""

    source: str
    pixels: np.ndarray


@dataclass
class InputCertificate:
    source: str
    predicted: int
    class_name: str
    margin: float  #: top-2 logit margin, float64 reference
    margin_radius: float  #: the largest ε (to 2^-16) the margin certificate proves
    ibp_radius: float  #: the same for interval bounds
    eps: float
    certified: bool  #: proved at ε by either certificate

    @property
    def radius(self) -> float:
        return max(self.margin_radius, self.ibp_radius)

    def as_dict(self) -> dict:
        return {**asdict(self), "radius": self.radius}


def load_inputs(paths: list[str], shape: tuple[int, int, int], resize: bool = False) -> list[Input]:
    """Every input the files hold, as float32 [C, H, W] checked against the model's ``shape``."""
    inputs = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            inputs.append(Input(str(path), _read_image(path, shape, resize)))
        elif suffix in ARRAY_SUFFIXES:
            if resize:
                raise LinfdistError(f"{path}: --resize applies to images; resample arrays before saving them")
            inputs += [Input(source, _checked_array(source, a, shape)) for source, a in _read_arrays(path, shape)]
        else:
            kinds = ", ".join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)
            raise LinfdistError(f"{path}: not an image or array file; give {kinds}")
    return inputs


def _read_image(path: Path, shape, resize: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise LinfdistError(f"{path}: not a readable image ({type(err).__name__})") from None
    if image.mode not in _MODES.values():
        raise LinfdistError(f"{path}: image mode {image.mode} is neither grayscale (L) nor RGB; convert it first")
    if image.mode != _MODES.get(channels):
        raise LinfdistError(f"{path}: a {image.mode} image, but the model takes {channels} channel(s) "
                            f"({_MODES.get(channels, '?')}); convert it first")
    if image.size != (width, height):
        if not resize:
            raise LinfdistError(f"{path}: {image.size[0]}×{image.size[1]} pixels, the model takes {width}×{height}; "
                                "pass --resize to resample it")
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _read_arrays(path: Path, shape):
    """(source, array) pairs: an .npy holds one input or a batch [N, C, H, W]; an .npz one or more arrays."""
    try:
        if path.suffix.lower() == ".npy":
            named = [(str(path), np.load(path, allow_pickle=False))]
        else:
            with np.load(path, allow_pickle=False) as archive:
                named = [(f"{path}:{key}", archive[key]) for key in archive.files]
    except (OSError, ValueError, EOFError) as err:
        raise LinfdistError(f"{path}: not a readable numpy file ({type(err).__name__})") from None
    pairs = []
    for source, array in named:
        if array.ndim == len(shape) + 1:
            pairs += [(f"{source}[{i}]", a) for i, a in enumerate(array)]
        else:
            pairs.append((source, array))
    return pairs


def _checked_array(source: str, array: np.ndarray, shape) -> np.ndarray:
    if array.dtype == np.uint8 or (array.dtype.kind in "iu"):
        raise LinfdistError(f"{source}: integer pixels ({array.dtype}); give floats in [0, 1] (divide 0–255 "
                            "values by 255)")
    if array.dtype.kind != "f":
        raise LinfdistError(f"{source}: {array.dtype} is not a pixel array")
    if array.ndim == 2 and shape[0] == 1:
        array = array[None]
    if array.ndim == 3 and array.shape == (shape[1], shape[2], shape[0]) and array.shape != tuple(shape):
        raise LinfdistError(f"{source}: shape {array.shape} is [H, W, C]; the model takes [C, H, W] "
                            f"{tuple(shape)} (transpose it)")
    if array.shape != tuple(shape):
        raise LinfdistError(f"{source}: shape {array.shape}, the model takes {tuple(shape)}")
    if not np.isfinite(array).all():
        raise LinfdistError(f"{source}: holds NaN or infinite values")
    problem = pixel_range_problem(float(array.min()), float(array.max()))
    if problem:
        raise LinfdistError(f"{source}: {problem}")
    return array.astype(np.float32)


def certify_inputs(graph, inputs: list[Input], eps: float) -> list[InputCertificate]:
    """The verifier's certificates for each input at its own prediction, and its certified radii (each
    certificate's, to 2^-RADIUS_STEPS: ``verify.radii``, all inputs in one search)."""
    from linfdist.data import DATASET_TABLE
    from linfdist.verify.certificates import certify, lipschitz
    from linfdist.verify.radii import certified_radii

    if not 0 <= eps < float("inf"):
        raise LinfdistError(f"--eps must be >= 0 and finite, got {eps}")
    dataset = DATASET_TABLE.get(graph.metadata.get("linfdist.dataset", ""))
    classes = json.loads(graph.metadata["linfdist.classes"]) if "linfdist.classes" in graph.metadata else (
        list(dataset.classes) if dataset else [])
    lips = lipschitz(graph)
    x = np.stack([item.pixels for item in inputs])
    labels = certify(graph, x, np.zeros(len(x), np.int64), 0.0, lips).predictions
    at_eps = certify(graph, x, labels, eps, lips)
    radii = [np.maximum(certified_radii(graph, x, labels, (), lips, kind, 1 << RADIUS_STEPS)[0], 0.0)
             for kind in ("margin", "ibp")]
    results = []
    for i, item in enumerate(inputs):
        label, logits = int(labels[i]), at_eps.logits[i]
        margin = float(logits[label] - np.delete(logits, label).max())
        name = classes[label] if label < len(classes) else str(label)
        results.append(InputCertificate(item.source, label, name, margin, float(radii[0][i]), float(radii[1][i]),
                                        float(eps), bool(at_eps.certified[i])))
    return results
