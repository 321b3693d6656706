"""The figure every paper shows: certified accuracy against the ℓ∞ radius, beside the published figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linfdist.data import DATASET_TABLE
from linfdist.files import atomic_path
from linfdist.zoo.published import PUBLISHED, eps_text


def plot_robustness(report, graph, path: Path) -> None:
    """A PNG of certified accuracy against ε from the report's per-sample radii: clean accuracy at ε = 0, the
    model's trained ε marked, the papers' figures for the same data set as points, the requested radii as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    radius = np.asarray(report.radii)
    requested = [p["eps"] for p in report.curve]
    published = [(eps, fig) for (dataset, eps), figs in PUBLISHED.items() if dataset == report.dataset
                 for fig in figs]
    trained = float(graph.metadata.get("linfdist.eps", "nan"))
    top = max(requested + [e for e, _ in published] + ([trained] if trained == trained else [])) * 1.25 or 1.0
    grid = np.linspace(0, top, 200)[1:]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(np.concatenate([[0.0], grid]), [report.clean_accuracy] + [100 * float(np.mean(radius >= e)) for e in grid],
            color="C0", label="certified (verifier)")
    ax.plot([0.0], [report.clean_accuracy], "o", color="C0", mfc="white", label="clean accuracy")
    ax.plot(requested, [p["certified_accuracy"] for p in report.curve], "o", color="C0", label="requested ε")
    for i, paper in enumerate(sorted({f.paper for _, f in published})):
        points = [(e, f.certified) for e, f in published if f.paper == paper]
        ax.plot(*zip(*points), marker="^s*Dv"[i % 5], linestyle="none", color=f"C{i + 1}", label=f"{paper} (published)")
    if trained == trained:
        ax.axvline(trained, color="grey", linestyle="--", linewidth=1, label=f"trained ε = {eps_text(trained)}")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 100)
    ax.set_xlabel("ℓ∞ radius ε (pixel units)")
    ax.set_ylabel("accuracy (%)")
    model = Path(report.model.removesuffix(" (exported to ONNX)")).name
    data = DATASET_TABLE[report.dataset].title if report.dataset in DATASET_TABLE else report.dataset
    ax.set_title(f"{model}: certified accuracy on {data} test, n = {report.n}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
