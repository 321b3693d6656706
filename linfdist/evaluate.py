"""Clean and certified accuracy of a model over a dataset, in batches with a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from linfdist.certify import certify


@dataclass
class Evaluation:
    """Counts and per-sample radii over n samples at radius eps."""

    n: int
    eps: float
    correct: int
    margin_certified: int | None
    ibp_certified: int
    certified: int
    seconds: float
    radius: np.ndarray

    def as_dict(self) -> dict:
        pct = lambda k: None if k is None else 100.0 * k / self.n  # noqa: E731
        return {
            "n": self.n,
            "eps": self.eps,
            "clean_accuracy": pct(self.correct),
            "certified_accuracy": pct(self.certified),
            "certified_accuracy_margin": pct(self.margin_certified),
            "certified_accuracy_ibp": pct(self.ibp_certified),
            "seconds": round(self.seconds, 3),
        }


def pixels(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 images → float32 pixels in [0, 1]."""
    return torch.tensor(images_uint8, dtype=torch.float32).div_(255.0)


def evaluate(model, images: np.ndarray, labels: np.ndarray, eps: float, batch_size: int = 500,
             progress: bool = True, desc: str = "certify") -> Evaluation:
    """Certify every sample of (images uint8 [N, C, H, W], labels [N]) at radius ε."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need a non-empty set of images with one label each, got {len(images)} and {len(labels)}")
    start = time.perf_counter()
    totals = {"correct": 0, "margin": 0, "ibp": 0, "certified": 0}
    has_margin = True
    radii = []
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False)
    for i in range(0, len(images), batch_size):
        x = pixels(images[i: i + batch_size])
        y = torch.from_numpy(labels[i: i + batch_size]).long()
        cert = certify(model, x, y, eps)
        totals["correct"] += int(cert.correct.sum())
        totals["ibp"] += int(cert.ibp_certified.sum())
        totals["certified"] += int(cert.certified.sum())
        if cert.margin_certified is None:
            has_margin = False
        else:
            totals["margin"] += int(cert.margin_certified.sum())
        radii.append(cert.radius.numpy())
        bar.update(len(x))
    bar.close()
    return Evaluation(
        n=len(images), eps=eps, correct=totals["correct"],
        margin_certified=totals["margin"] if has_margin else None, ibp_certified=totals["ibp"],
        certified=totals["certified"], seconds=time.perf_counter() - start, radius=np.concatenate(radii),
    )
