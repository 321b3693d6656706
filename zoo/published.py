"""Certified accuracy the papers publish for ℓ∞-dist nets, per task: what a zoo model is compared to.

The papers: v1 (Zhang et al., ICML 2021, arXiv 2102.05363), v2 (ICLR 2022), SortNet (NeurIPS 2022);
their figures as the project's design card (DESIGN.md, "Published results") lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from linfdist.data import eps_text  # noqa: F401 - how ε is written, with the figures it labels


@dataclass(frozen=True)
class Published:
    paper: str  #: "v1", "v1 Net+MLP", "v2", "SortNet"
    certified: float  #: percent, on the full test split


#: (dataset, ε) → the published figures, best last.
PUBLISHED = {
    ("mnist", 0.1): (Published("v2", 97.95), Published("SortNet", 98.14)),
    ("mnist", 0.3): (Published("v1", 93.09), Published("v2", 93.20), Published("SortNet", 93.40)),
    ("fashion-mnist", 0.1): (Published("v1", 79.23),),
    ("cifar10", 2 / 255): (Published("v2", 54.12), Published("SortNet", 56.94)),
    ("cifar10", 8 / 255): (Published("v1", 35.10), Published("v1 Net+MLP", 35.42), Published("v2", 40.06),
                           Published("SortNet", 40.39)),
    ("tinyimagenet", 1 / 255): (Published("v1", 16.31), Published("SortNet", 17.9)),
}


def published(dataset: str, eps: float) -> tuple[Published, ...]:
    """The papers' figures for a task (none when no paper reports it)."""
    for (name, radius), figures in PUBLISHED.items():
        if name == dataset and math.isclose(radius, eps, rel_tol=1e-6):
            return figures
    return ()
