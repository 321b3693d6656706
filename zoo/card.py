"""Model cards: a README.md whose YAML header carries the certified accuracies."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from linfdist import __version__

DATASET_IDS = {"mnist": "ylecun/mnist", "fashion-mnist": "zalando-datasets/fashion_mnist", "cifar10": "uoft-cs/cifar10"}
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def card_data(config, results: dict) -> ModelCardData:
    """The YAML header: library, license, dataset, tags and a model-index with the accuracies."""
    eps = results["eps"]
    args = {"eps": eps, "certifier": f"linfdist {__version__} torch float32 (margin + IBP, rounding-aware)"}
    evals = [
        EvalResult(task_type="image-classification", dataset_type=DATASET_IDS[config.dataset],
                   dataset_name=DATASET_NAMES[config.dataset], dataset_split="test", metric_type=metric,
                   metric_value=round(results[metric], 2), metric_name=f"{metric.replace('_', ' ')} (eps={eps:g})",
                   metric_args=args)
        for metric in ("clean_accuracy", "certified_accuracy")
    ]
    return ModelCardData(
        library_name="linfdist", license="mit", datasets=[DATASET_IDS[config.dataset]],
        tags=["certified-robustness", "linf-dist-net", "adversarial-robustness"],
        model_name=f"{config.architecture}-{config.dataset}-{config.depth}x{config.width}", eval_results=evals,
    )


def card_text(config, results: dict, recipe: dict | None = None, command: str | None = None) -> str:
    """The model card for a model with ``config`` measured as ``results`` (an Evaluation.as_dict())."""
    eps = results["eps"]
    dataset = DATASET_NAMES[config.dataset]
    rows = [
        ("clean accuracy", results["clean_accuracy"]),
        ("certified accuracy (either certificate)", results["certified_accuracy"]),
        ("certified accuracy, margin certificate", results.get("certified_accuracy_margin")),
        ("certified accuracy, IBP", results.get("certified_accuracy_ibp")),
    ]
    table = "\n".join(f"| {name} | {'n/a' if v is None else f'{v:.2f}%'} |" for name, v in rows)
    arch = f"{config.depth} ℓ∞-dist layers of width {config.width}"
    if config.architecture == "LinfDistNetMLP":
        arch += f" + ReLU MLP head ({config.head_hidden} hidden)"
    body = f"""
# {config.architecture} on {dataset}, ε = {eps:g}

An ℓ∞-distance net (Zhang et al., ICML 2021, arXiv 2102.05363): {arch}, input
normalised with mean {config.mean} and std {config.std} (ε is in pixel units, [0, 1]).

## Certified robustness on the {dataset} test set ({results['n']} images, ℓ∞ radius ε = {eps:g})

| metric | value |
|---|---|
{table}

Measured by linfdist {__version__} in torch float32 on the whole test split: margin certificate
(margin > 2·L·ε with L = {1 / min(config.std):.4f}, less an explicit float32 rounding allowance) and IBP over
the input box clipped to [0, 1] (bounds widened for rounding); a sample counts when either proves it.
Re-check with `linfdist verify <this folder>`.
"""
    if command:
        body += f"\n## Reproduce\n\n```\n{command}\n```\n"
    if recipe:
        body += f"\n## Training recipe\n\n```json\n{json.dumps(recipe, indent=2)}\n```\n"
    return f"---\n{card_data(config, results).to_yaml()}\n---\n{body}"


def write_model_card(folder: Path, config, results: dict, recipe: dict | None = None, command: str | None = None):
    """Write README.md into a Hub-layout folder."""
    (Path(folder) / "README.md").write_text(card_text(config, results, recipe, command))
