"""Train an ℓ∞-dist net as the papers' code does (losses, schedules, init, weight decay), resumable.

A recipe (``Recipe``) holds every setting; built-in ones live in ``RECIPES`` and any
field can be overridden. Losses live in ``linfdist.losses``, schedules in
``linfdist.schedules``, the optimiser in ``linfdist.optim``. Each epoch ends with an
atomic checkpoint (``checkpoint.pt``, loaded with ``weights_only=True``) and a line in
``metrics.jsonl``; ``resume=True`` continues from the last complete epoch. The result is a Hub-layout folder
(config.json, model.safetensors, README.md model card with the measured figures).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from linfdist.curves import CURVES_FILE, plot_curves, read_metrics, run_summary
from linfdist.data import INPUT_SHAPES, load_dataset
from linfdist.device import device_name
from linfdist.evaluate import evaluate, pixels
from linfdist.files import atomic_path
from linfdist.losses import LOSSES, v1_hinge_loss, v2_mixture_loss
from linfdist.models import LinfDistNet, LinfDistNetMLP, load_pretrained
from linfdist.optim import make_optimizer
from linfdist.schedules import P_SCHEDULES, ce_lambda_at, eps_at, lr_at, lr_factor, p_at

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RECIPE_FILE = "recipe.json"
MODEL_DIR = "model"
CHECKPOINT_FORMAT = "linfdist.train/3"

DATASET_STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2860], [0.3520]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2009]),
}


@dataclass
class Recipe:
    """Every setting of a training run (the authors' names in the docs: docs/training.md)."""

    name: str = "custom"
    dataset: str = "mnist"
    architecture: str = "LinfDistNet"
    depth: int = 5
    width: int = 5120
    head_hidden: int = 512
    identity_value: float = 10.0
    eps_test: float = 0.1
    eps_train: float = 0.3
    eps_ramp_epochs: float = 0.0
    epochs: int = 450
    p_start: float = 8.0
    p_end: float = 1000.0
    p_warm_epochs: int = 25
    p_inf_epochs: int = 50
    p_schedule: str = "per-step"
    p_update_epochs: int = 1  # "per-epoch" only: epochs each p is held for
    p_integer: bool = False
    batch_size: int = 512
    lr: float = 0.03
    lr_final: float = 0.0
    lr_hold_epochs: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    adam_eps: float = 1e-10
    weight_decay: float = 0.0
    loss: str = "v2"
    hinge_clip: float = 1.0  # v2
    ce_lambda_start: float = 0.05  # v2
    ce_lambda_end: float = 0.0002  # v2
    logit_scale: float = 1.0  # v2: initial value of the learnable scale on the CE logits
    logit_scale_lr: float = 0.006  # v2
    hinge_mix: float = 0.75  # v1
    hinge_kappa: float = 1.0  # v1
    crop_pad: int = 1
    crop_padding: str = "edge"
    flip: bool = False
    train_limit: int = 0
    eval_limit: int = 1000
    pgd_steps: int = 10
    checkpoint_minutes: float = 5.0
    seed: int = 0
    backend: str = "auto"
    init_from: str = ""  # a checkpoint folder whose weights start the run (fine-tuning); "" = random init

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe field(s): {', '.join(unknown)}")
        return cls(**data).checked()

    def checked(self) -> "Recipe":
        """This recipe, or a one-line ValueError naming the first impossible setting."""
        if self.dataset not in DATASET_STATS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASET_STATS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.p_schedule not in P_SCHEDULES:
            raise ValueError(f"p_schedule must be one of {', '.join(P_SCHEDULES)}, got {self.p_schedule!r}")
        for name in ("depth", "width", "epochs", "batch_size", "p_update_epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"recipe field {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.crop_padding not in CROP_PADDINGS:
            raise ValueError(f"crop_padding must be one of {', '.join(CROP_PADDINGS)}, got {self.crop_padding!r}")
        if self.p_inf_epochs > self.epochs:
            raise ValueError(f"p_inf_epochs {self.p_inf_epochs} exceeds epochs {self.epochs}")
        if self.checkpoint_minutes <= 0:
            raise ValueError(f"checkpoint_minutes must be > 0, got {self.checkpoint_minutes}")
        if self.loss == "v2" and (self.eps_train <= 0 or self.eps_ramp_epochs > 0):
            raise ValueError("the v2 loss divides by ε_train: it needs eps_train > 0 from the first step "
                             "(eps_ramp_epochs=0)")
        if min(self.ce_lambda_start, self.ce_lambda_end) <= 0:
            raise ValueError("ce_lambda_start and ce_lambda_end must be > 0 (λ decays geometrically)")
        return self

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


CROP_PADDINGS = ("zeros", "edge")  # what a shifted image shows at its border: zeros, or its edge pixels

#: The papers' commands at full width (GPU-sized), and the same formulas sized for 2 CPU cores.
#: v2 (zbh2047/L_inf-dist-net-v2, command/*.sh): p = 8 for 25 epochs, annealed to 1000 by epoch 400,
#: ∞ for the last 50; full ε_train from the first step; batch 512; no weight decay.
_V2 = dict(loss="v2", depth=5, width=5120, epochs=450, p_warm_epochs=25, p_inf_epochs=50, batch_size=512,
           lr=0.03, logit_scale=1.0, logit_scale_lr=0.006, weight_decay=0.0, eps_ramp_epochs=0.0, crop_pad=1,
           crop_padding="edge", hinge_clip=1.0, p_schedule="per-step")
_CIFAR = dict(_V2, dataset="cifar10", depth=6, epochs=1300, p_warm_epochs=100, crop_pad=3, flip=True,
              ce_lambda_start=0.1, ce_lambda_end=0.0005)
#: v1 (zbh2047/L_inf-dist-net, command/ell_inf_dist_net_*.sh, --epochs 0,50,0,350,400): p = 8 and a constant
#: learning rate for 50 epochs, then p annealed to 1000 by epoch 350 and the rate cosine-decayed; full ε_train;
#: the hinge alone (kappa 1); decoupled ℓp weight decay 5e-3; crops padded with zeros.
_V1 = dict(loss="v1", depth=5, width=5120, epochs=400, p_warm_epochs=50, p_inf_epochs=50, lr_hold_epochs=50,
           batch_size=512, lr=0.02, weight_decay=5e-3, eps_ramp_epochs=0.0, crop_pad=1, crop_padding="zeros",
           hinge_kappa=1.0, p_schedule="per-step")
_MNIST_CPU = dict(_V2, width=512, epochs=40, p_warm_epochs=3, p_inf_epochs=5, batch_size=256, pgd_steps=0)
_CIFAR_CPU = dict(_CIFAR, width=512, epochs=60, p_warm_epochs=5, p_inf_epochs=6, batch_size=256, pgd_steps=0)
RECIPES = {
    "mnist-0.1": Recipe(name="mnist-0.1", eps_test=0.1, eps_train=0.3, **_V2),  # command/mnist_0.1.sh
    "mnist-0.3": Recipe(name="mnist-0.3", eps_test=0.3, eps_train=0.45, **_V2),  # command/mnist_0.3.sh
    # v1's command/ell_inf_dist_net_fashionmnist.sh: hinge(mix=1.0), ε_train 0.225
    "fmnist-0.1": Recipe(name="fmnist-0.1", dataset="fashion-mnist", eps_test=0.1, eps_train=0.225,
                         **dict(_V1, hinge_mix=1.0)),
    # command/cifar_0.0078425.sh; ε_test stays 2/255 exactly (the script's 0.0078425 is rounded down)
    "cifar10-2": Recipe(name="cifar10-2", eps_test=2 / 255, eps_train=0.03922,
                        **dict(_CIFAR, ce_lambda_start=0.05, ce_lambda_end=0.002)),
    "cifar10-8": Recipe(name="cifar10-8", eps_test=8 / 255, eps_train=0.09411, **_CIFAR),  # command/cifar_0.03137.sh
    # The bundled default model's size (5 × 256), v2's MNIST 0.1 formulas.
    "mnist-default": Recipe(name="mnist-default", eps_test=0.1, eps_train=0.3,
                            **dict(_MNIST_CPU, width=256, p_warm_epochs=2, p_inf_epochs=6, batch_size=128,
                                   backend="torch-compile")),
    # The CPU-sized zoo: width 512, batch 256, 40 epochs (60 on CIFAR-10), the papers' schedule shapes.
    "mnist-0.1-cpu": Recipe(name="mnist-0.1-cpu", eps_test=0.1, eps_train=0.3, **_MNIST_CPU),
    "mnist-0.3-cpu": Recipe(name="mnist-0.3-cpu", eps_test=0.3, eps_train=0.45, **_MNIST_CPU),
    "fmnist-0.1-cpu": Recipe(name="fmnist-0.1-cpu", dataset="fashion-mnist", eps_test=0.1, eps_train=0.225,
                             **dict(_V1, hinge_mix=1.0, width=512, epochs=40, p_warm_epochs=5, lr_hold_epochs=5,
                                    p_inf_epochs=5, batch_size=256, pgd_steps=0)),
    "cifar10-8-cpu": Recipe(name="cifar10-8-cpu", eps_test=8 / 255, eps_train=0.09411, **_CIFAR_CPU),
    "cifar10-2-cpu": Recipe(name="cifar10-2-cpu", eps_test=2 / 255, eps_train=0.03922,
                            **dict(_CIFAR_CPU, ce_lambda_start=0.05, ce_lambda_end=0.002)),
    # Fine-tunes the 8/255 model at p = ∞ with v2's 2/255 loss at its final λ and a small learning rate.
    "cifar10-2-ft-cpu": Recipe(name="cifar10-2-ft-cpu", eps_test=2 / 255, eps_train=0.03922,
                               init_from="cifar10-6x512-eps8_255",
                               **dict(_CIFAR_CPU, epochs=10, p_warm_epochs=0, p_inf_epochs=10, lr=0.0005,
                                      ce_lambda_start=0.002, ce_lambda_end=0.002)),
    # Under 15 minutes on 2 CPU cores.
    "mnist-tiny": Recipe(name="mnist-tiny", eps_test=0.1, eps_train=0.3,
                         **dict(_V2, width=128, epochs=12, p_warm_epochs=1, p_inf_epochs=3, batch_size=128,
                                eval_limit=1000, pgd_steps=10, backend="torch-compile")),
    # A seconds-long run for tests and smoke checks.
    "mnist-smoke": Recipe(name="mnist-smoke", eps_test=0.1, eps_train=0.1,
                          **dict(_V2, depth=3, width=32, epochs=2, p_warm_epochs=0, p_inf_epochs=1, batch_size=64,
                                 train_limit=512, eval_limit=200, pgd_steps=3)),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


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


def start_from(model, recipe: Recipe) -> None:
    """Copy the weights of ``recipe.init_from`` (a checkpoint folder, else a zoo name, its files checked
    against the registry) into the recipe's model, refusing another net (architecture, data, size) with one line."""
    from linfdist import zoo

    folder = Path(recipe.init_from)
    source = load_pretrained(folder) if folder.is_dir() else zoo.load(recipe.init_from)
    mine, theirs = model.config.to_dict(), source.config.to_dict()
    differ = sorted(k for k in ("architecture", "dataset", "input_shape", "depth", "width", "num_classes",
                                "mean", "std", "identity_value", "head_hidden") if mine.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"init_from {recipe.init_from}: its net differs from the recipe's in {', '.join(differ)}")
    model.load_state_dict(source.state_dict())


def training_loss(logits, labels, recipe: Recipe, lipschitz: float, scale, t: float):
    """The recipe's loss at position t of the run (ε and λ from their schedules)."""
    shift = 2 * lipschitz * eps_at(recipe, t)
    if recipe.loss == "v2":
        return v2_mixture_loss(logits, labels, shift, recipe.hinge_clip, ce_lambda_at(recipe, t), scale)
    return v1_hinge_loss(logits, labels, shift, recipe.hinge_mix, recipe.hinge_kappa)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator, padding: str = "zeros") -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels, as RandomCrop(size, padding=pad, padding_mode=...):
    ``padding`` "zeros" fills the border with 0, "edge" repeats the edge pixels (v2's setting)."""
    if pad == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate" if padding == "edge" else "constant")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path, durable=True) as tmp:
        torch.save(obj, tmp)


@dataclass
class Progress:
    """Where a run stands: the epoch in progress, the next step, that epoch's order and sums."""

    epoch: int = 0
    step: int = 0
    order: torch.Tensor | None = None
    sums: dict = field(default_factory=lambda: {"loss": 0.0, "correct": 0, "n": 0, "eps": 0.0})


class Run:
    """The trainable state of a run and its checkpoint file."""

    def __init__(self, recipe: Recipe, path: Path, device: str = "cpu"):
        self.recipe, self.path, self.device = recipe, path, torch.device(device)
        torch.manual_seed(recipe.seed)
        self.model = build_model(recipe).to(self.device)  # initialised on the CPU: the same net on any device
        self.optimizer, self.scale, self.decay = make_optimizer(self.model, recipe)
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.progress = Progress()

    def save(self) -> None:
        """Everything needed to continue exactly: weights, Adam, scale, RNG, position in the epoch."""
        p = self.progress
        _atomic_save({"format": CHECKPOINT_FORMAT, "recipe": asdict(self.recipe), "epoch": p.epoch, "step": p.step,
                      "order": p.order, "sums": p.sums, "model": self.model.state_dict(),
                      "optimizer": self.optimizer.state_dict(), "scale": self.scale.detach().clone(),
                      "rng": {"torch": torch.get_rng_state(), "data": self.generator.get_state()}}, self.path)

    def restore(self) -> None:
        """Load the checkpoint, refusing one from another recipe or architecture with one line."""
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
            raise ValueError(f"{self.path} is not a readable linfdist checkpoint ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.path} was not written by this version of linfdist train")
        saved = asdict(Recipe.from_dict(state["recipe"]))
        changed = sorted(k for k, v in asdict(self.recipe).items() if saved[k] != v)
        if changed:
            raise ValueError(f"--resume with a different recipe or architecture than the checkpoint's "
                             f"(fields {', '.join(changed)}); resume with the saved recipe.json")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError:
            raise ValueError(f"{self.path} holds weights of another architecture") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale.data.copy_(state["scale"])
        self.generator.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        self.progress = Progress(state["epoch"], state["step"], state["order"], state["sums"])


class StopRequest:
    """Set by SIGINT (or a test): the loop saves a checkpoint after the current step and stops.

    A second SIGINT interrupts at once (the last checkpoint stays as it is).
    """

    def __init__(self):
        self.requested = False

    def __call__(self, *_):
        if self.requested:
            raise KeyboardInterrupt("interrupted twice")
        self.requested = True
        print("linfdist train: stopping after this step to save a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def is_set(self) -> bool:
        return self.requested


def _train_epoch(run: Run, x_all, y_all, stop: StopRequest, progress: bool, started: float) -> bool:
    """Continue the epoch in ``run.progress`` (its clock started at ``started``); False when stopped
    early (after a checkpoint)."""
    recipe, model, pos = run.recipe, run.model, run.progress
    model.train()
    steps = math.ceil(len(x_all) / recipe.batch_size)  # the last partial batch is kept, as the authors' loader does
    if pos.order is None:
        pos.order = torch.randperm(len(x_all), generator=run.generator)
    bar = tqdm(total=steps, initial=pos.step, desc=f"epoch {pos.epoch + 1}/{recipe.epochs}", disable=not progress,
               leave=False)
    last_save = time.monotonic()
    while pos.step < steps:
        t = pos.epoch + pos.step / steps
        p, eps = p_at(recipe, t), eps_at(recipe, t)
        model.set_p(p)
        factor = lr_factor(recipe, t)
        for group in run.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        idx = pos.order[pos.step * recipe.batch_size: (pos.step + 1) * recipe.batch_size]
        x, y = random_crop(x_all[idx], recipe.crop_pad, run.generator, recipe.crop_padding), y_all[idx]
        if recipe.flip:
            x = random_flip(x, run.generator)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        logits = model(x)
        loss = training_loss(logits, y, recipe, model.trunk.input_lipschitz(), run.scale, t)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {pos.epoch + 1} step {pos.step}; "
                                     f"the last good checkpoint is kept in {run.path}")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.decay.step(run.optimizer.param_groups[0]["lr"])
        run.optimizer.step()
        pos.sums["loss"] += loss.item() * len(y)
        pos.sums["correct"] += int((logits.argmax(1) == y).sum())
        pos.sums["n"] += len(y)
        pos.sums["eps"] = eps
        pos.step += 1
        bar.update(1)
        bar.set_postfix(p=f"{p:g}", eps=f"{eps:.3f}", loss=f"{pos.sums['loss'] / pos.sums['n']:.4f}")
        stopping = stop.is_set()
        if stopping or time.monotonic() - last_save > 60 * recipe.checkpoint_minutes:
            pos.sums["seconds"] = time.perf_counter() - started
            run.save()
            last_save = time.monotonic()
            if stopping:
                bar.close()
                return False
    bar.close()
    return True


def train(recipe: Recipe, out: Path, data_dir=None, resume: bool = False, progress: bool = True,
          stop: StopRequest | None = None, device: str = "cpu") -> Path:
    """Run (or resume) a recipe into ``out`` on ``device`` (cpu, cuda); returns the Hub-layout model folder.

    Data order and augmentation come from a CPU generator and the net is initialised on the
    CPU, so a run is the same run on any device (up to the kernels' rounding); a checkpoint
    written on one device resumes on another.

    A checkpoint is written every ``checkpoint_minutes`` and at every epoch's end; SIGINT
    (or ``stop``) saves one at the next step and raises KeyboardInterrupt.
    """
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested, but torch sees no CUDA device")
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

    run = Run(recipe, ckpt_path, device)
    if resume:
        run.restore()
    elif recipe.init_from:
        start_from(run.model, recipe)
    (out / RECIPE_FILE).write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    stop = stop or StopRequest()
    x_all, y_all = pixels(train_x), torch.from_numpy(train_y).long()
    with _sigint_sets(stop):
        while run.progress.epoch < recipe.epochs:
            # seconds already spent on this epoch before an interruption come back with the checkpoint
            started = time.perf_counter() - run.progress.sums.get("seconds", 0.0)
            if not _train_epoch(run, x_all, y_all, stop, progress, started):
                raise KeyboardInterrupt(f"stopped; progress saved in {ckpt_path}")
            _end_epoch(run, out, test_x, test_y, time.perf_counter() - started, progress)
            if stop.is_set():  # arrived during the evaluation: the epoch's checkpoint is saved
                raise KeyboardInterrupt(f"stopped; progress saved in {ckpt_path}")
    return finalize(run.model, recipe, out, test_x, test_y, progress)


def _end_epoch(run: Run, out: Path, test_x, test_y, seconds: float, progress: bool) -> None:
    """Evaluate at p = ∞ with PGD, log the epoch, draw the curves and checkpoint."""
    recipe, pos = run.recipe, run.progress
    ev = evaluate_at_linf(run.model, test_x[: recipe.eval_limit], test_y[: recipe.eval_limit], recipe, progress,
                          seed=recipe.seed + pos.epoch)
    p = p_at(recipe, pos.epoch)
    sums = pos.sums
    record = {"epoch": pos.epoch + 1, "p": p if math.isfinite(p) else "inf", "eps_train": sums["eps"],
              "lr": lr_at(recipe, pos.epoch + 1), "train_loss": sums["loss"] / sums["n"],
              "train_accuracy": 100.0 * sums["correct"] / sums["n"], "seconds": seconds,
              "device": device_name(run.device.type), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **{f"test_{k}": v for k, v in ev.as_dict().items() if k not in ("eps", "seconds")}}
    run.progress = Progress(pos.epoch + 1)
    run.save()
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
    plot_curves(out / METRICS, out / CURVES_FILE)
    if ev.pgd_violations:
        tqdm.write(f"BUG: PGD broke {ev.pgd_violations} certified test samples at epoch {pos.epoch + 1}; "
                   "certificates must never be broken, please report this with the run folder", file=sys.stderr)
    if progress:
        pgd = "" if ev.pgd_correct is None else f" pgd {record['test_pgd_accuracy']:.2f}%"
        tqdm.write(
            f"epoch {pos.epoch + 1}: p={record['p']} loss={record['train_loss']:.4f} "
            f"train acc {record['train_accuracy']:.2f}% | test clean {record['test_clean_accuracy']:.2f}% "
            f"certified {record['test_certified_accuracy']:.2f}%{pgd} at p=inf (n={ev.n})"
        )


@contextlib.contextmanager
def _sigint_sets(stop: StopRequest):
    """Route SIGINT to ``stop`` while training (main thread only), restoring the old handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def evaluate_at_linf(model, images, labels, recipe: Recipe, progress: bool, seed: int = 0):
    """Certified and PGD accuracy of the net switched to p = ∞ (certificates need it), then restored."""
    p, backend = model.config.p, recipe.backend
    model.set_p(math.inf)
    model.set_backend("auto")  # eval batches have other shapes: no torch.compile recompilation
    model.eval()
    try:
        return evaluate(model, images, labels, recipe.eps_test, progress=progress, desc="eval at p=inf",
                        pgd_steps=recipe.pgd_steps, seed=seed)
    finally:
        model.set_p(p)
        model.set_backend(backend)


def finalize(model, recipe: Recipe, out: Path, test_x, test_y, progress: bool) -> Path:
    """Write the Hub-layout folder, then certify it on the full test set with the independent
    verifier and write its model card from what the verifier derived."""
    from linfdist.zoo.card import verified_results, write_model_card

    model.set_p(math.inf)
    model.set_backend("auto")
    model.eval()
    model.cpu()  # the saved model and its certification are device-independent
    target = out / MODEL_DIR
    model.save_pretrained(target)
    shutil.copyfile(out / CURVES_FILE, target / CURVES_FILE)
    results = verified_results(target, test_x, test_y, recipe.eps_test, progress=progress)
    write_model_card(target, model.config, results, recipe=asdict(recipe), command=reproduce_command(recipe),
                     run=run_summary(read_metrics(out / METRICS), asdict(recipe)))
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
