"""Train an ℓ∞-dist net: p-annealing, ε ramp, certified-margin hinge + CE, resumable.

A recipe (``Recipe``) holds every setting; built-in ones live in ``RECIPES`` and any
field can be overridden. Each epoch ends with an atomic checkpoint (``checkpoint.pt``,
loaded with ``weights_only=True``) and a line in ``metrics.jsonl``; ``resume=True``
continues from the last complete epoch. The result is a Hub-layout folder
(config.json, model.safetensors, README.md model card with the measured figures).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from linfdist.certify import margin
from linfdist.data import INPUT_SHAPES, load_dataset
from linfdist.evaluate import evaluate, pixels
from linfdist.models import LinfDistNet, LinfDistNetMLP

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RECIPE_FILE = "recipe.json"
MODEL_DIR = "model"

DATASET_STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2009]),
}


@dataclass
class Recipe:
    """Every setting of a training run."""

    name: str = "custom"
    dataset: str = "mnist"
    architecture: str = "LinfDistNet"
    depth: int = 5
    width: int = 5120
    head_hidden: int = 512
    identity_value: float = 10.0
    eps_test: float = 0.1
    eps_train: float = 0.15
    eps_ramp_epochs: float = 5.0
    epochs: int = 40
    p_start: float = 8.0
    p_end: float = 1000.0
    p_warm_epochs: int = 2
    p_inf_epochs: int = 5
    p_integer: bool = True
    p_update_epochs: int = 1
    batch_size: int = 128
    lr: float = 0.02
    lr_final: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    adam_eps: float = 1e-10
    weight_decay: float = 0.0
    hinge_weight: float = 0.75
    hinge_theta: float = 0.3
    logit_scale: float = 4.0
    logit_scale_lr: float = 0.006
    crop_pad: int = 1
    train_limit: int = 0
    eval_limit: int = 1000
    seed: int = 0
    backend: str = "auto"

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe field(s): {', '.join(unknown)}")
        return cls(**data)

    def override(self, assignments: list[str]) -> "Recipe":
        """A copy with ``field=value`` assignments applied (values parsed as JSON, else text)."""
        data = asdict(self)
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not of the form field=value")
            if key not in data:
                raise ValueError(f"unknown recipe field {key!r}")
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError:
                data[key] = raw
        return Recipe.from_dict(data)


RECIPES = {
    # The bundled default model: small enough to train on 2 CPU cores.
    "mnist-default": Recipe(
        name="mnist-default", dataset="mnist", depth=5, width=256, eps_test=0.1, eps_train=0.15,
        epochs=40, p_warm_epochs=2, p_inf_epochs=6, p_update_epochs=2, batch_size=128, lr=0.02,
        backend="torch-compile",
    ),
    # A seconds-long run for tests and smoke checks.
    "mnist-smoke": Recipe(
        name="mnist-smoke", dataset="mnist", depth=3, width=32, eps_test=0.1, eps_train=0.1,
        eps_ramp_epochs=1, epochs=2, p_warm_epochs=0, p_inf_epochs=1, batch_size=64,
        train_limit=512, eval_limit=200,
    ),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def p_at(recipe: Recipe, epoch: float) -> float:
    """p-annealing: p_start for the warm epochs, geometric to p_end, then ∞ for the last ones.

    p is constant within an epoch (and over ``p_update_epochs`` epochs), so compiled
    kernels are reused; ``p_integer`` rounds it for the fast integer-power path.
    """
    anneal_end = recipe.epochs - recipe.p_inf_epochs
    if epoch >= anneal_end:
        return math.inf
    if epoch < recipe.p_warm_epochs:
        return recipe.p_start
    span = max(anneal_end - recipe.p_warm_epochs, 1)
    stage = (math.floor(epoch) - recipe.p_warm_epochs) // recipe.p_update_epochs * recipe.p_update_epochs
    frac = min(1.0, stage / max(span - recipe.p_update_epochs, 1))
    p = recipe.p_start * (recipe.p_end / recipe.p_start) ** frac
    return float(round(p)) if recipe.p_integer else p


def eps_at(recipe: Recipe, epoch: float) -> float:
    """Linear ε ramp from 0 to eps_train over the first eps_ramp_epochs."""
    if recipe.eps_ramp_epochs <= 0:
        return recipe.eps_train
    return recipe.eps_train * min(1.0, epoch / recipe.eps_ramp_epochs)


def lr_at(recipe: Recipe, epoch: float) -> float:
    """Cosine decay from lr to lr_final over the run."""
    t = min(1.0, epoch / recipe.epochs)
    return recipe.lr_final + 0.5 * (recipe.lr - recipe.lr_final) * (1 + math.cos(math.pi * t))


def build_model(recipe: Recipe):
    """The model a recipe describes, at p = p_start."""
    mean, std = DATASET_STATS[recipe.dataset]
    common = dict(
        input_shape=list(INPUT_SHAPES[recipe.dataset]), num_classes=10, depth=recipe.depth, width=recipe.width,
        p=recipe.p_start, identity_value=recipe.identity_value, mean=mean, std=std, dataset=recipe.dataset,
        eps=recipe.eps_test,
    )
    if recipe.architecture == "LinfDistNet":
        model = LinfDistNet(LinfDistNet.config_class(architecture="LinfDistNet", **common))
    elif recipe.architecture == "LinfDistNetMLP":
        model = LinfDistNetMLP(
            LinfDistNetMLP.config_class(architecture="LinfDistNetMLP", head_hidden=recipe.head_hidden, **common)
        )
    else:
        raise ValueError(f"unknown architecture {recipe.architecture!r}; known: LinfDistNet, LinfDistNetMLP")
    model.set_backend(recipe.backend)
    return model


def certified_margin_loss(logits, labels, eps: float, lipschitz: float, recipe: Recipe, log_scale):
    """v1 loss: hinge on the certified margin mixed with CE on worst-case-shifted logits."""
    shift = 2 * lipschitz * eps
    hinge = F.relu(recipe.hinge_theta - (margin(logits, labels) - shift)).mean()
    worst = logits + shift * (1 - F.one_hot(labels, logits.shape[1]).to(logits.dtype))
    ce = F.cross_entropy(worst * log_scale.exp(), labels)
    return recipe.hinge_weight * hinge + (1 - recipe.hinge_weight) * ce


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels (zero padding), as RandomCrop(size, padding=pad)."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "data": generator.get_state()}


def _make_optimizer(model, recipe: Recipe):
    """Adam over the model and the learnable log logit scale (its own learning rate)."""
    log_scale = torch.nn.Parameter(torch.tensor(math.log(recipe.logit_scale)))
    optimizer = torch.optim.Adam(
        [{"params": model.parameters(), "weight_decay": recipe.weight_decay},
         {"params": [log_scale], "lr": recipe.logit_scale_lr, "weight_decay": 0.0}],
        lr=recipe.lr, betas=tuple(recipe.adam_betas), eps=recipe.adam_eps,
    )
    return optimizer, log_scale


def _restore(ckpt_path: Path, recipe: Recipe, model, optimizer, log_scale, generator) -> int:
    """Load a checkpoint written by ``train``; returns the next epoch to run."""
    state = torch.load(ckpt_path, weights_only=True)
    saved = Recipe.from_dict(state["recipe"])
    if asdict(saved) != asdict(recipe):
        changed = sorted(k for k, v in asdict(recipe).items() if asdict(saved)[k] != v)
        raise ValueError(f"--resume with a different recipe (fields {', '.join(changed)}); use the saved one")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log_scale.data.copy_(state["log_scale"])
    generator.set_state(state["rng"]["data"])
    torch.set_rng_state(state["rng"]["torch"])
    return state["epoch"] + 1


def _train_epoch(model, optimizer, log_scale, x_all, y_all, recipe: Recipe, epoch: int, generator, progress) -> dict:
    """One pass over the shuffled training set; returns loss and accuracy sums."""
    model.train()
    steps = len(x_all) // recipe.batch_size  # the last partial batch is dropped
    order = torch.randperm(len(x_all), generator=generator)
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not progress, leave=False)
    sums = {"loss": 0.0, "correct": 0, "n": 0, "eps": 0.0}
    for step in bar:
        t = epoch + step / steps
        p, eps = p_at(recipe, t), eps_at(recipe, t)
        model.set_p(p)
        optimizer.param_groups[0]["lr"] = lr_at(recipe, t)
        idx = order[step * recipe.batch_size: (step + 1) * recipe.batch_size]
        x, y = random_crop(x_all[idx], recipe.crop_pad, generator), y_all[idx]
        logits = model(x)
        loss = certified_margin_loss(logits, y, eps, model.trunk.input_lipschitz(), recipe, log_scale)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step}; "
                                     "the last good checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums["loss"] += loss.item() * len(y)
        sums["correct"] += int((logits.argmax(1) == y).sum())
        sums["n"] += len(y)
        sums["eps"] = eps
        bar.set_postfix(p=f"{p:g}", eps=f"{eps:.3f}", loss=f"{sums['loss'] / sums['n']:.4f}")
    bar.close()
    return sums


def train(recipe: Recipe, out: Path, data_dir=None, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a recipe into ``out``; returns the Hub-layout model folder."""
    out = Path(out)
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    train_x, train_y = load_dataset(recipe.dataset, "train", data_dir)
    test_x, test_y = load_dataset(recipe.dataset, "test", data_dir)
    if recipe.train_limit:
        train_x, train_y = train_x[: recipe.train_limit], train_y[: recipe.train_limit]
    if len(train_x) < recipe.batch_size:
        raise ValueError(f"batch_size {recipe.batch_size} exceeds the {len(train_x)} training images")
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(recipe.seed)
    model = build_model(recipe)
    optimizer, log_scale = _make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(recipe.seed)
    start_epoch = _restore(ckpt_path, recipe, model, optimizer, log_scale, generator) if resume else 0
    (out / RECIPE_FILE).write_text(json.dumps(asdict(recipe), indent=2) + "\n")

    x_all, y_all = pixels(train_x), torch.from_numpy(train_y).long()
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        sums = _train_epoch(model, optimizer, log_scale, x_all, y_all, recipe, epoch, generator, progress)
        ev = evaluate_at_linf(model, test_x[: recipe.eval_limit], test_y[: recipe.eval_limit], recipe, progress)
        p = p_at(recipe, epoch)
        record = {"epoch": epoch + 1, "p": p if math.isfinite(p) else "inf", "eps_train": sums["eps"],
                  "lr": lr_at(recipe, epoch + 1), "train_loss": sums["loss"] / sums["n"],
                  "train_accuracy": 100.0 * sums["correct"] / sums["n"], "seconds": time.perf_counter() - started,
                  **{f"test_{k}": v for k, v in ev.as_dict().items() if k not in ("eps", "seconds")}}
        _atomic_save({"recipe": asdict(recipe), "epoch": epoch, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "log_scale": log_scale.detach().clone(),
                      "rng": _rng_state(generator)}, ckpt_path)
        with open(out / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: p={record['p']} loss={record['train_loss']:.4f} "
                f"train acc {record['train_accuracy']:.2f}% | test clean {record['test_clean_accuracy']:.2f}% "
                f"certified {record['test_certified_accuracy']:.2f}% at p=inf (n={ev.n})"
            )
    return finalize(model, recipe, out, test_x, test_y, progress)


def evaluate_at_linf(model, images, labels, recipe: Recipe, progress: bool):
    """Certified accuracy of the net switched to p = ∞ (certificates need it), then restored."""
    p, backend = model.config.p, recipe.backend
    model.set_p(math.inf)
    model.set_backend("auto")  # eval batches have other shapes: no torch.compile recompilation
    try:
        return evaluate(model, images, labels, recipe.eps_test, progress=progress, desc="eval at p=inf")
    finally:
        model.set_p(p)
        model.set_backend(backend)


def finalize(model, recipe: Recipe, out: Path, test_x, test_y, progress: bool) -> Path:
    """Certify on the full test set and write the Hub-layout folder with its model card."""
    from linfdist.zoo.card import write_model_card

    model.set_p(math.inf)
    model.set_backend("auto")
    model.eval()
    ev = evaluate(model, test_x, test_y, recipe.eps_test, progress=progress, desc="certify test set")
    target = out / MODEL_DIR
    model.save_pretrained(target)
    write_model_card(target, model.config, ev.as_dict(), recipe=asdict(recipe), command=reproduce_command(recipe))
    return target


def _cli_value(value) -> str:
    """A recipe value as ``--set`` parses it back: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def reproduce_command(recipe: Recipe) -> str:
    """The ``linfdist train`` command line that reproduces a recipe."""
    name = recipe.name if recipe.name in RECIPES else "mnist-default"
    base = asdict(RECIPES[name])
    changed = [f"--set {k}={_cli_value(v)}" for k, v in asdict(recipe).items() if base[k] != v]
    return " ".join(["linfdist train --recipe", name, "--data-dir DATA", *changed])
