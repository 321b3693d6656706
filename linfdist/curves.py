"""Training curves from metrics.jsonl drawn as a PNG (matplotlib, headless), optionally beside
a published run's test log, and the summary of a run that model cards state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.files import atomic_path

CURVES_FILE = "curves.png"  # in a run folder and beside the model its card shows


def read_metrics(path: Path) -> list[dict]:
    """The per-epoch records of a run, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@dataclass
class ReferenceRun:
    """A published run's test accuracies per epoch (percent), to draw beside ours."""

    label: str
    epochs: int
    points: list[tuple[int, float, float]]  # (epoch, clean %, certified %)


def read_v2_test_log(path: Path, label: str, epochs: int | None = None) -> ReferenceRun:
    """The v2 authors' ``logs/<task>/test_inf.log`` (tab-separated epoch, acc, certified as
    fractions, evaluated at p = ∞): one ReferenceRun, or a ValueError naming the bad line.
    ``epochs`` (the run's length) defaults to the last logged epoch: their logs run to the end."""
    try:
        lines = Path(path).read_text().splitlines()
    except UnicodeDecodeError:
        raise LinfdistError(f"{path}: not a text file (expected the v2 code's test_inf.log)") from None
    if not lines or lines[0].split() != ["epoch", "acc", "certified"]:
        raise LinfdistError(f"{path}: expected a header 'epoch acc certified' (the v2 code's test_inf.log)")
    points = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            epoch, acc, cert = line.split()
            points.append((int(epoch), 100 * float(acc), 100 * float(cert)))
        except ValueError as exc:
            raise LinfdistError(f"{path}:{number}: not 'epoch acc certified': {line!r}") from exc
    if not points:
        raise LinfdistError(f"{path}: no epochs")
    return ReferenceRun(label, epochs or points[-1][0], points)


def chain_records(base: list[dict], records: list[dict]) -> list[dict]:
    """A fine-tuning run's records after those of the run whose weights it started from, its epochs
    counted on from the base run's last."""
    offset = base[-1]["epoch"] if base else 0
    return base + [{**r, "epoch": r["epoch"] + offset} for r in records]


def run_summary(records: list[dict], recipe: dict | None = None, fine_tuned_after: int | None = None) -> dict:
    """What a model card says about the run: epochs, wall time, devices, when it ended, the checkpoint
    it started from (the recipe's init_from, "" for a random start) and, for ``records`` chained by
    ``chain_records`` (``recipe`` then the first run's), the epoch after which fine-tuning began."""
    devices = list(dict.fromkeys(r["device"] for r in records if r.get("device")))
    return {"epochs": records[-1]["epoch"] if records else 0,
            "wall_seconds": sum(r.get("seconds", 0.0) for r in records),
            "devices": devices, "finished": records[-1].get("finished") if records else None,
            "init_from": (recipe or {}).get("init_from", ""), "fine_tuned_after": fine_tuned_after}


#: One colour per quantity, the same in every panel (and the reference run's its own).
COLORS = {"train_loss": "C4", "train_accuracy": "C0", "test_clean_accuracy": "C1", "test_pgd_accuracy": "C2",
          "test_certified_accuracy": "C3", "reference": "C7", "p": "gray"}
#: Where p = ∞ is drawn on the log p axis.
P_INF_AT = 2000


def plot_curves(records: list[dict], png_path: Path, reference: ReferenceRun | None = None,
                total_epochs: int | None = None, recipe: dict | None = None,
                fine_tuned_after: int | None = None) -> None:
    """Loss and p, then clean / certified / PGD accuracy per epoch of a run's ``records`` (read_metrics),
    written atomically to ``png_path`` (titled from the run's ``recipe`` where given).

    With ``reference``, a third panel draws its certified and clean test accuracy beside ours
    against the fraction of training done (runs of different lengths share one axis). With
    ``fine_tuned_after`` (records chained by ``chain_records``), a vertical line marks where
    fine-tuning began.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    title = curves_title(recipe, records) if recipe else None
    if fine_tuned_after is not None and title:
        title += f"; fine-tuned after epoch {fine_tuned_after}"
    with plt.rc_context({"lines.marker": "." if len(epochs) < 20 else ""}):  # a short run's points stay visible
        _draw(plt, records, epochs, png_path, reference, total_epochs, title, fine_tuned_after)


def _draw(plt, records, epochs, png_path, reference, total_epochs, title, fine_tuned_after) -> None:
    panels = 3 if reference else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.3))
    ax_loss, ax_acc = axes[0], axes[1]
    ax_loss.plot(epochs, [r["train_loss"] for r in records], color=COLORS["train_loss"], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    p_axis = ax_loss.twinx()
    p_axis.plot(epochs, [P_INF_AT if r["p"] == "inf" else r["p"] for r in records], color=COLORS["p"], ls=":",
                label="p (right axis)")
    p_axis.set_yscale("log")
    ticks = [t for t in (1, 2, 4, 8, 16, 32, 100, 300, 1000) if t <= P_INF_AT] + [P_INF_AT]
    p_axis.set_yticks(ticks, [str(t) for t in ticks[:-1]] + ["∞"])
    p_axis.minorticks_off()
    p_axis.set_ylabel("p")
    handles = ax_loss.get_legend_handles_labels()[0] + p_axis.get_legend_handles_labels()[0]
    ax_loss.legend(handles=handles, loc="upper right", fontsize=8)
    for key, label in (("train_accuracy", "train clean"), ("test_clean_accuracy", "test clean"),
                       ("test_pgd_accuracy", "test PGD"), ("test_certified_accuracy", "test certified")):
        if all(r.get(key) is not None for r in records):
            ax_acc.plot(epochs, [r[key] for r in records], color=COLORS[key], label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%), test at p = ∞")
    ax_acc.legend(loc="lower right", fontsize=8)
    if reference:
        _draw_reference(axes[2], records, reference, total_epochs or max(epochs, default=1))
    if fine_tuned_after is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(fine_tuned_after, color=COLORS["p"], lw=0.8, ls="--")
        ax_acc.text(fine_tuned_after, 0.98, " fine-tuning", transform=ax_acc.get_xaxis_transform(), fontsize=7,
                    va="top")
        if reference:
            axes[2].axvline(fine_tuned_after / (total_epochs or max(epochs)), color=COLORS["p"], lw=0.8, ls="--")
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        fig.tight_layout()
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)


def curves_title(recipe: dict, records: list[dict]) -> str:
    """The figure's title: recipe, data set, ε, net and how many test images each epoch evaluates."""
    from linfdist.data import DATASET_TABLE, eps_text

    data = DATASET_TABLE.get(recipe.get("dataset"))
    n = records[-1].get("test_n") if records else None
    return (f"{recipe.get('name', 'run')}: {data.title if data else recipe.get('dataset')}, "
            f"ε = {eps_text(recipe.get('eps_test', 0.0))}, {recipe.get('depth')} × {recipe.get('width')}"
            + (f"; test figures on {n} images" if n else ""))


def _draw_reference(ax, records: list[dict], reference: ReferenceRun, total_epochs: int) -> None:
    ours = [r["epoch"] / total_epochs for r in records]
    theirs = [e / reference.epochs for e, _, _ in reference.points]
    ax.plot(ours, [r["test_certified_accuracy"] for r in records], color=COLORS["test_certified_accuracy"],
            label="ours: certified")
    ax.plot(ours, [r["test_clean_accuracy"] for r in records], color=COLORS["test_clean_accuracy"],
            label="ours: clean")
    ax.plot(theirs, [c for _, _, c in reference.points], color=COLORS["reference"],
            label=f"{reference.label}: certified")
    ax.plot(theirs, [a for _, a, _ in reference.points], color=COLORS["reference"], ls="--",
            label=f"{reference.label}: clean")
    ax.set_xlabel(f"fraction of training (ours {total_epochs} epochs, theirs {reference.epochs})")
    ax.set_ylabel("test accuracy at p = ∞ (%)")
    ax.set_ylim(bottom=max(0.0, min(c for _, _, c in reference.points[len(reference.points) // 2:]) - 20))
    ax.legend(loc="lower right", fontsize=8)
