"""Clean and certified accuracy of a model over a dataset, in batches with a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from linfdist.attack import pgd
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
    pgd_correct: int | None = None
    pgd_violations: int | None = None  # certified samples PGD misclassified: must be 0

    def as_dict(self) -> dict:
        pct = lambda k: None if k is None else 100.0 * k / self.n  # noqa: E731
        return {
            "n": self.n,
            "eps": self.eps,
            "clean_accuracy": pct(self.correct),
            "certified_accuracy": pct(self.certified),
            "certified_accuracy_margin": pct(self.margin_certified),
            "certified_accuracy_ibp": pct(self.ibp_certified),
            **({} if self.pgd_correct is None else
               {"pgd_accuracy": pct(self.pgd_correct), "pgd_violations": self.pgd_violations}),
            "seconds": round(self.seconds, 3),
        }


def pixels(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 images → float32 pixels in [0, 1]."""
    return torch.tensor(images_uint8, dtype=torch.float32).div_(255.0)


def evaluate(model, images: np.ndarray, labels: np.ndarray, eps: float, batch_size: int = 500,
             progress: bool = True, desc: str = "certify", pgd_steps: int = 0, seed: int = 0) -> Evaluation:
    """Certify every sample of (images uint8 [N, C, H, W], labels [N]) at radius ε.

    With ``pgd_steps`` > 0 also attack each sample with PGD at ε (seeded by ``seed``) and
    count PGD accuracy and certified samples the attack broke (a soundness bug if any).
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need a non-empty set of images with one label each, got {len(images)} and {len(labels)}")
    start = time.perf_counter()
    totals = {"correct": 0, "margin": 0, "ibp": 0, "certified": 0, "pgd": 0, "violations": 0}
    generator = torch.Generator().manual_seed(seed)
    has_margin = True
    radii = []
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False)
    device = next(model.parameters()).device
    for i in range(0, len(images), batch_size):
        x = pixels(images[i: i + batch_size]).to(device)
        y = torch.from_numpy(labels[i: i + batch_size]).long().to(device)
        cert = certify(model, x, y, eps)
        totals["correct"] += int(cert.correct.sum())
        totals["ibp"] += int(cert.ibp_certified.sum())
        totals["certified"] += int(cert.certified.sum())
        if cert.margin_certified is None:
            has_margin = False
        else:
            totals["margin"] += int(cert.margin_certified.sum())
        radii.append(cert.radius.cpu().numpy())
        if pgd_steps:
            adv = pgd(model, x, y, eps, pgd_steps, generator)
            with torch.no_grad():
                robust = model(adv).argmax(1) == y
            totals["pgd"] += int(robust.sum())
            totals["violations"] += int((cert.certified & ~robust).sum())
        bar.update(len(x))
    bar.close()
    return Evaluation(
        n=len(images), eps=eps, correct=totals["correct"],
        margin_certified=totals["margin"] if has_margin else None, ibp_certified=totals["ibp"],
        certified=totals["certified"], seconds=time.perf_counter() - start, radius=np.concatenate(radii),
        pgd_correct=totals["pgd"] if pgd_steps else None, pgd_violations=totals["violations"] if pgd_steps else None,
    )
