"""Train a recipe, certify the trained net with the independent verifier, write its model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.workflows.certification import certify_folder
from linfdist.workflows.resolve import resolve_model
from linfdist.zoo.registry import get_entry


def train_and_certify(recipe, out, data_dir=None, resume: bool = False, progress: bool = True, stop=None,
                      device: str = "cpu", world=None) -> Path | None:
    """``linfdist.train.train`` into ``out`` (a zoo name in ``recipe.init_from`` resolved to its folder), then
    the full test split certified from the exported model and the card written from what the verifier derived.
    Returns the model folder ``out/model`` (None on the ranks other than 0 of a distributed ``world``, which
    only train)."""
    from linfdist.curves import read_metrics, run_summary
    from linfdist.data import load_dataset
    from linfdist.models import load_pretrained
    from linfdist.train import METRICS, train
    from linfdist.zoo.card import write_model_card

    start = resolve_model(recipe.init_from) if recipe.init_from else None
    if start is not None and start.is_onnx:
        raise LinfdistError(f"init_from {recipe.init_from}: an ONNX file has no weights to start from")
    target = train(recipe, out, data_dir=data_dir, resume=resume, progress=progress, stop=stop, device=device,
                   start=start.path if start is not None and not resume else None, world=world)
    if target is None:
        return None
    images, labels = load_dataset(recipe.dataset, "test", data_dir)
    results = certify_folder(target, images, labels, recipe.eps_test, progress=progress)
    base = get_entry(start.zoo_name).repo_id if start is not None and start.zoo_name else None
    write_model_card(target, load_pretrained(target).config, results, recipe=asdict(recipe),
                     command=reproduce_command(recipe), run=run_summary(read_metrics(Path(out) / METRICS),
                                                                        asdict(recipe)), base_model=base)
    return target


def _cli_value(value) -> str:
    """A recipe value as ``--set`` parses it back: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def reproduce_command(recipe, run: str | None = None) -> str:
    """The ``linfdist train`` command line that reproduces a recipe (into the run folder ``run`` where given)."""
    from linfdist.recipe import RECIPES

    name = recipe.name if recipe.name in RECIPES else "mnist-default"
    base = asdict(RECIPES[name])
    changed = [f"--set {k}={_cli_value(v)}" for k, v in asdict(recipe).items() if base[k] != v]
    return " ".join(["linfdist train", *([run] if run else []), "--recipe", name, "--data-dir DATA", *changed])
