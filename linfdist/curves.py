"""Training curves from metrics.jsonl drawn as a PNG (matplotlib, headless)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    """The per-epoch records of a run, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, png_path: Path) -> None:
    """Loss, clean / certified / PGD test accuracy and p per epoch, written atomically to ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    p_axis = ax_loss.twinx()
    p_axis.plot(epochs, [2000 if r["p"] == "inf" else r["p"] for r in records], color="gray", ls=":", label="p")
    p_axis.set_yscale("log")
    p_axis.set_ylabel("p (∞ drawn at 2000)")
    for key, label in (("train_accuracy", "train clean"), ("test_clean_accuracy", "test clean"),
                       ("test_pgd_accuracy", "test PGD"), ("test_certified_accuracy", "test certified")):
        if all(r.get(key) is not None for r in records):
            ax_acc.plot(epochs, [r[key] for r in records], label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend(loc="lower right")
    ax_loss.legend(loc="upper right")
    fig.tight_layout()
    tmp = Path(png_path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png_path)
