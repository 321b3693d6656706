"""Model cards: a README.md whose YAML header carries the certified accuracies.

The figures on a card are derived by the independent verifier (``linfdist.workflows.certify_folder``)
from the model exported to ONNX, never by the training code; a bundled model's card is regenerated
from its registry entry (``linfdist.workflows.sync_zoo``).
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from linfdist.data import dataset_info
from linfdist.files import CARD_FILE
from linfdist.zoo.published import eps_text

TRAINING_SECTIONS = ("Training run", "Training notes", "Reproduce", "Training recipe")
#: The figures a card states, in its model-index and its table (None: not derived for this model).
METRICS = ("clean_accuracy", "certified_accuracy", "certified_accuracy_margin", "certified_accuracy_ibp")


CITATION = """@inproceedings{zhang2021towards,
  title = {Towards Certifying {$\\ell_\\infty$} Robustness using Neural Networks with {$\\ell_\\infty$}-dist Neurons},
  author = {Zhang, Bohang and Cai, Tianle and Lu, Zhou and He, Di and Wang, Liwei},
  booktitle = {International Conference on Machine Learning (ICML)},
  year = {2021}
}

@inproceedings{zhang2022boosting,
  title = {Boosting the Certified Robustness of L-infinity Distance Nets},
  author = {Zhang, Bohang and Jiang, Du and He, Di and Wang, Liwei},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2022}
}"""


def card_data(config, results: dict, base_model: str | None = None) -> ModelCardData:
    """The YAML header: library, license, pipeline, dataset, tags, the model it was fine-tuned from and a
    model-index (named per model and ε) with the accuracies."""
    eps = results["eps"]
    args = {"eps": eps, "certifier": results["certifier"], "test_images": results["n"]}
    data = dataset_info(config.dataset)
    evals = [
        EvalResult(task_type="image-classification", dataset_type=data.hub_id, dataset_name=data.title,
                   dataset_split="test", metric_type=metric, metric_value=round(results[metric], 2),
                   metric_name=f"{metric.replace('_', ' ')} (eps={eps_text(eps)})", metric_args=args)
        for metric in METRICS if results.get(metric) is not None
    ]
    return ModelCardData(
        library_name="linfdist", license="mit", pipeline_tag="image-classification", datasets=[data.hub_id],
        tags=["certified-robustness", "linf-dist-net", "adversarial-robustness"], base_model=base_model,
        model_name=f"{config.architecture}-{config.dataset}-{config.depth}x{config.width}-eps{eps_text(eps)}",
        eval_results=evals,
    )


def run_section(run: dict) -> str:
    """Where, how long and when the model trained (curves.run_summary), with its curves."""
    hours, rest = divmod(round(run["wall_seconds"]), 3600)
    devices = "; ".join(run["devices"]) or "not recorded"
    finished = run["finished"] or "not recorded"
    started = (f"\n| started from | the weights of `{run['init_from']}` (fine-tuning: the epochs and time above are "
               "this run's alone) |" if run.get("init_from") else "")
    after = run.get("fine_tuned_after")
    epochs = (f"{run['epochs']} ({after}, then {run['epochs'] - after} fine-tuning the weights they ended with)"
              if after is not None else run["epochs"])
    return f"""
## Training run

| | |
|---|---|
| epochs | {epochs} |
| wall time | {hours} h {rest // 60:02d} min (sum of the epochs' times) |
| device | {devices} |
| finished (UTC) | {finished} |{started}

![training curves](curves.png)

`curves.png`: training loss and p, train and test accuracy per epoch (test figures on the first
images of the test split at p = ∞, as training evaluates them; the table above is the verifier's).
A third panel, where drawn (`linfdist curves RUN --reference LOG`), puts a published run's test log
beside ours against the fraction of training done: the v2 authors' `logs/<task>/test_inf.log`
(github.com/zbh2047/L_inf-dist-net-v2, full test set; the legend names their net, the axis their epochs).
"""


def usage_section(name: str, config, eps: str) -> str:
    """How to load, certify, export and deploy the model."""
    shape = ", ".join(map(str, config.input_shape))
    return f"""
## How to use

```bash
pip install -e .                 # in a clone of linfdist
linfdist verify {name} --data-dir DATA          # re-derive the figures above
linfdist certify my_image.png --model {name}    # certify your own input at ε = {eps}
linfdist export {name} -o model.onnx            # stock ONNX Runtime runs it
```

```python
import linfdist, torch
model = linfdist.load_model("{name}")          # files checked against the registry's sha256
x = torch.rand(1, {shape})                      # pixels in [0, 1], NCHW
logits = model(x)
```

With ONNX Runtime: `onnxruntime.InferenceSession("model.onnx").run(None, {{"pixels": x.numpy()}})`; the
file's metadata carries ε, the preprocessing (inside the graph) and the claimed figures.
"""


LIMITATIONS = """
## Limitations

The certificates hold for ℓ∞ perturbations of at most ε around inputs from this data set's pixel domain
[0, 1], for exact arithmetic and for float32 runtimes that follow the verifier's rounding model (IEEE
round-to-nearest, no fast-math or TF32); they say nothing about other threat models (ℓ2, rotations,
distribution shift) or about inputs unlike the training data. Clean accuracy is below that of
unconstrained networks of the same size.
"""


def card_text(config, results: dict, recipe: dict | None = None, command: str | None = None,
              run: dict | None = None, name: str | None = None, base_model: str | None = None) -> str:
    """The model card for a model with ``config`` and the verifier's ``results`` (``linfdist.workflows.certify_folder``);
    ``name`` is what to load it by in the usage section (its zoo name; else a folder)."""
    eps = eps_text(results["eps"])
    dataset = dataset_info(config.dataset).title
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
    classes = ("\nClasses: " + ", ".join(f"{i} {name}" for i, name in config.id2label.items()) + "."
               if config.id2label else "")
    body = f"""
# {config.architecture} on {dataset}, ε = {eps}

An ℓ∞-distance net (Zhang et al., ICML 2021, arXiv 2102.05363): {arch}, input
normalised with mean {config.mean} and std {config.std} (ε is in pixel units, [0, 1]).{classes}

## Certified robustness on the {dataset} test set ({results['n']} images, ℓ∞ radius ε = {eps})

| metric | value |
|---|---|
{table}

Derived by the independent verifier ({results['certifier']}) from the model exported to ONNX, on
the whole test split: margin certificate (each logit difference against its ℓ∞ Lipschitz bound, L = {1 / min(config.std):.4f}
per logit) and interval bounds over the input box clipped to [0, 1]; both subtract explicit bounds on a float32
runtime's rounding error, and a sample counts when either proves it. Re-check with `linfdist verify <this folder>`.
"""
    body += usage_section(name or "path/to/this/folder", config, eps) + LIMITATIONS
    body += f"\n## Citation\n\n```bibtex\n{CITATION}\n```\n"
    if run:
        body += run_section(run)
    if command:
        body += f"\n## Reproduce\n\n```\n{command}\n```\n"
    if recipe:
        body += f"\n## Training recipe\n\n```json\n{json.dumps(recipe, indent=2)}\n```\n"
    return f"---\n{card_data(config, results, base_model).to_yaml()}\n---\n{body}"


def write_model_card(folder: Path, config, results: dict, recipe: dict | None = None, command: str | None = None,
                     run: dict | None = None, name: str | None = None, base_model: str | None = None):
    """Write README.md into a Hub-layout folder."""
    (Path(folder) / CARD_FILE).write_text(card_text(config, results, recipe, command, run, name, base_model))


def rewrite_results(folder: Path, config, results: dict, name: str | None = None,
                    base_model: str | None = None) -> None:
    """Regenerate a card's head (header, figures, usage, citation), keeping its training sections."""
    path = Path(folder) / CARD_FILE
    old = path.read_text() if path.is_file() else ""
    starts = [i for i in (old.find(f"\n## {title}") for title in TRAINING_SECTIONS) if i >= 0]
    tail = old[min(starts):] if starts else ""
    path.write_text(card_text(config, results, name=name, base_model=base_model) + tail)


def _put_section(folder: Path, title: str, section: str, before: str | None = None) -> None:
    """Replace the card's ``## title`` section with ``section``, adding it before the ``## before``
    section (or at the end) where the card has none."""
    path = Path(folder) / CARD_FILE
    text = path.read_text()
    start = text.find(f"\n## {title}\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    else:
        at = text.find(f"\n## {before}\n") if before else -1
        text = text + section if at < 0 else text[:at] + section + text[at:]
    path.write_text(text)


def refresh_run_section(folder: Path, run: dict) -> None:
    """Rewrite the card's Training run section from ``run`` (curves.run_summary), adding it
    before the Reproduce section (or at the end) where the card has none."""
    _put_section(folder, "Training run", run_section(run), before="Reproduce")


def refresh_reproduce_section(folder: Path, commands: list[str]) -> None:
    """Rewrite the card's Reproduce section: the ``linfdist train`` commands, one per line, in order."""
    body = "\n".join(commands)
    _put_section(folder, "Reproduce", f"\n## Reproduce\n\n```\n{body}\n```\n", before="Training recipe")
