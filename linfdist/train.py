"""The training loop: run a recipe (``linfdist.recipe``) into a run folder, resumable at any step.

Each epoch ends with a line in ``metrics.jsonl``; an atomic checkpoint (``checkpoint.pt``, loaded with
``weights_only=True``) is written every ``checkpoint_minutes`` (at the end of the step or epoch where they are
up), after the last epoch and on SIGINT or SIGTERM, so epochs of a second on a GPU do not each pay for one;
``resume=True`` continues exactly, dropping the log lines of epochs after the checkpoint. The run ends by
saving the net at p = ∞ as a Hub-layout folder (``model/``: config.json, model.safetensors,
curves.png). Certifying it and writing its model card is ``linfdist.workflows.train_and_certify``'s job.

Under torchrun (``linfdist.distributed.World``) each rank trains on its shard of every global batch of
``batch_size`` through DistributedDataParallel; the order and augmentation of the global batches come from
the seed alone, so a run is the same run on any number of ranks, and a checkpoint resumes on any number.
Rank 0 alone evaluates, logs, writes the checkpoint and the model folder.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from linfdist.augment import augment
from linfdist.curves import CURVES_FILE, plot_curves, read_metrics
from linfdist.data import dataset_info, load_dataset, resolve_data_dir
from linfdist.device import device_name
from linfdist.distributed import World
from linfdist.errors import LinfdistError
from linfdist.evaluate import evaluate, pixels
from linfdist.files import atomic_path
from linfdist.losses import training_loss
from linfdist.models import LinfDistNet, LinfDistNetMLP, load_pretrained
from linfdist.nn import MeanShift
from linfdist.optim import make_optimizer
from linfdist.recipe import CROP_PADDINGS, RECIPES, Recipe, get_recipe  # noqa: F401 - public names of linfdist.train
from linfdist.schedules import eps_at, lr_at, lr_factor, p_at
from linfdist.verify.errors import first_line

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CURVES_SECONDS = 30  # curves.png is redrawn at most this often (and after the last epoch)
RECIPE_FILE = "recipe.json"
RUN_FILE = "run.json"  # where the run's data came from, so --resume needs nothing but the folder
MODEL_DIR = "model"
CHECKPOINT_FORMAT = "linfdist.train/3"

def build_model(recipe: Recipe):
    """The model a recipe describes, at p = p_start."""
    data = dataset_info(recipe.dataset)
    common = dict(
        input_shape=list(data.shape), num_classes=10, depth=recipe.depth, width=recipe.width,
        p=recipe.p_start, identity_value=recipe.identity_value, mean=list(data.mean), std=list(data.std),
        dataset=recipe.dataset,
        eps=recipe.eps_test,
    )
    if recipe.architecture == "LinfDistNet":
        model = LinfDistNet(LinfDistNet.config_class(architecture="LinfDistNet", **common))
    elif recipe.architecture == "LinfDistNetMLP":
        model = LinfDistNetMLP(
            LinfDistNetMLP.config_class(architecture="LinfDistNetMLP", head_hidden=recipe.head_hidden, **common)
        )
    else:
        raise LinfdistError(f"unknown architecture {recipe.architecture!r}; known: LinfDistNet, LinfDistNetMLP")
    model.set_backend(recipe.backend)
    return model


def start_from(model, folder: Path) -> None:
    """Copy the weights of the checkpoint folder ``folder`` into the recipe's model, refusing another
    net (architecture, data, size) with one line."""
    source = load_pretrained(folder)
    mine, theirs = model.config.to_dict(), source.config.to_dict()
    differ = sorted(k for k in ("architecture", "dataset", "input_shape", "depth", "width", "num_classes",
                                "mean", "std", "identity_value", "head_hidden") if mine.get(k) != theirs.get(k))
    if differ:
        raise LinfdistError(f"init_from {folder}: its net differs from the recipe's in {', '.join(differ)}")
    model.load_state_dict(source.state_dict())


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


class _Replicated(torch.nn.Module):
    """The net and, where the loss uses it, the logit scale as one module: DistributedDataParallel averages
    the gradients of both."""

    def __init__(self, model: torch.nn.Module, scale: torch.nn.Parameter | None):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Run:
    """The trainable state of a run and its checkpoint file."""

    def __init__(self, recipe: Recipe, path: Path, device: str = "cpu", world: World | None = None):
        self.world = world or World()
        self.recipe, self.path, self.device = recipe, path, torch.device(self.world.device(device))
        torch.manual_seed(recipe.seed)
        self.model = build_model(recipe).to(self.device)  # initialised on the CPU: the same net on any device
        self.optimizer, self.scale, self.decay = make_optimizer(self.model, recipe)
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.progress = Progress()
        self.forward = self.model
        self.saved_at = time.monotonic()  # when the last checkpoint was written (or the run began)
        self.plotted_at = -math.inf  # when curves.png was last drawn

    def replicate(self) -> None:
        """On several ranks: train through DistributedDataParallel (rank 0's weights broadcast at the start),
        with mean-shift statistics over the global batch unless the recipe asks for each rank's own."""
        if not self.world.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel

        for module in self.model.modules():
            if isinstance(module, MeanShift):
                module.global_stats = self.recipe.mean_shift_stats == "global"
        replicated = _Replicated(self.model, self.scale if self.recipe.loss == "v2" else None)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.forward = DistributedDataParallel(replicated, device_ids=ids)

    def save(self) -> None:
        """Everything needed to continue exactly: weights, Adam, scale, RNG, position in the epoch. On several
        ranks every rank comes here at the same step; rank 0 writes once all have finished it."""
        self.world.barrier()
        if not self.world.main:
            return
        p = self.progress
        _atomic_save({"format": CHECKPOINT_FORMAT, "recipe": asdict(self.recipe), "epoch": p.epoch, "step": p.step,
                      "order": p.order, "sums": p.sums, "model": self.model.state_dict(),
                      "optimizer": self.optimizer.state_dict(), "scale": self.scale.detach().clone(),
                      "rng": {"torch": torch.get_rng_state(), "data": self.generator.get_state()}}, self.path)
        self.saved_at = time.monotonic()

    def checkpoint_time_up(self) -> bool:
        """Whether ``checkpoint_minutes`` have passed since the last checkpoint, by rank 0's clock (False on the
        other ranks: callers all-reduce it, so every rank saves at the same step)."""
        return self.world.main and time.monotonic() - self.saved_at > 60 * self.recipe.checkpoint_minutes

    def restore(self) -> None:
        """Load the checkpoint, refusing one from another recipe or architecture with one line."""
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
            raise LinfdistError(f"{self.path} is not a readable linfdist checkpoint ({type(err).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise LinfdistError(f"{self.path} was not written by this version of linfdist train")
        saved = asdict(Recipe.from_dict(state["recipe"]))
        changed = sorted(k for k, v in asdict(self.recipe).items() if saved[k] != v)
        if changed:
            raise LinfdistError(f"--resume with a different recipe or architecture than the checkpoint's "
                             f"(fields {', '.join(changed)}); resume with the saved recipe.json")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError:
            raise LinfdistError(f"{self.path} holds weights of another architecture") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale.data.copy_(state["scale"])
        self.generator.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        self.progress = Progress(state["epoch"], state["step"], state["order"], state["sums"])


class StopRequest:
    """Set by SIGINT or SIGTERM (or a test): the loop saves a checkpoint after the current step and stops.

    A second signal interrupts at once (the last checkpoint stays as it is).
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
    recipe, model, pos, world = run.recipe, run.model, run.progress, run.world
    model.train()
    steps = math.ceil(len(x_all) / recipe.batch_size)  # the last partial batch is kept, as the authors' loader does
    if pos.order is None:
        pos.order = torch.randperm(len(x_all), generator=run.generator)
    bar = tqdm(total=steps, initial=pos.step, desc=f"epoch {pos.epoch + 1}/{recipe.epochs}",
               disable=not (progress and world.main), leave=False)
    while pos.step < steps:
        t = pos.epoch + pos.step / steps
        p, eps = p_at(recipe, t), eps_at(recipe, t)
        model.set_p(p)
        factor = lr_factor(recipe, t)
        for group in run.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        idx = pos.order[pos.step * recipe.batch_size: (pos.step + 1) * recipe.batch_size]
        x, y = augment(x_all[idx], recipe, run.generator), y_all[idx]  # every rank draws the whole global batch
        shard = world.shard(len(y))
        x, y = x[shard].to(run.device, non_blocking=True), y[shard].to(run.device, non_blocking=True)
        logits = run.forward(x)
        loss = training_loss(logits, y, recipe, model.trunk.input_lipschitz(), run.scale, t)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {pos.epoch + 1} step {pos.step}; "
                                     f"the last good checkpoint is kept in {run.path}")
        run.optimizer.zero_grad(set_to_none=True)
        # DistributedDataParallel averages over ranks: weighting each shard's mean by its share of the global
        # batch makes that average the global batch's mean, shards of unequal size included
        (loss * (len(y) * world.size / len(idx)) if world.distributed else loss).backward()
        run.decay.step(run.optimizer.param_groups[0]["lr"])
        run.optimizer.step()
        due = run.checkpoint_time_up()
        loss_sum, correct, n, stops, saves = world.sum([loss.item() * len(y), float((logits.argmax(1) == y).sum()),
                                                        float(len(y)), float(stop.is_set()), float(due)])
        pos.sums["loss"] += loss_sum
        pos.sums["correct"] += int(correct)
        pos.sums["n"] += int(n)
        pos.sums["eps"] = eps
        pos.step += 1
        bar.update(1)
        bar.set_postfix(p=f"{p:g}", eps=f"{eps:.3f}", loss=f"{pos.sums['loss'] / pos.sums['n']:.4f}")
        stopping = stops > 0  # a stop on any rank stops every rank at this step
        if stopping or saves > 0:
            pos.sums["seconds"] = time.perf_counter() - started
            run.save()
            if stopping:
                bar.close()
                return False
    bar.close()
    return True


def train(recipe: Recipe, out: Path, data_dir=None, resume: bool = False, progress: bool = True,
          stop: StopRequest | None = None, device: str = "cpu", start: Path | None = None,
          world: World | None = None) -> Path | None:
    """Run (or resume) a recipe into ``out`` on ``device`` (cpu, cuda); returns the Hub-layout model folder
    (None on ranks other than 0 of a distributed ``world``).

    A new run starts from the weights of the checkpoint folder ``start`` when given, else from
    ``recipe.init_from`` when that is a folder (``linfdist.workflows`` resolves zoo names), else
    from the recipe's initialisation.

    Data order and augmentation come from a CPU generator and the net is initialised on the
    CPU, so a run is the same run on any device (up to the kernels' rounding); a checkpoint
    written on one device resumes on another.

    A checkpoint is written every ``checkpoint_minutes`` and after the last epoch; SIGINT or SIGTERM (or ``stop``) saves
    one at the next step and raises KeyboardInterrupt.
    """
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise LinfdistError("device cuda requested, but torch sees no CUDA device")
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
        raise LinfdistError(f"batch_size {recipe.batch_size} exceeds the {len(train_x)} training images")
    world = world or World()
    out.mkdir(parents=True, exist_ok=True)
    world.barrier()  # every rank has seen the checkpoint (or its absence) before rank 0 writes anything

    run = Run(recipe, ckpt_path, device, world)
    if resume:
        run.restore()
        if world.main:
            _drop_epochs_after(out / METRICS, run.progress.epoch)
    elif start is not None or recipe.init_from:
        start_from(run.model, _start_folder(recipe, start))
    run.replicate()
    if world.main:
        (out / RECIPE_FILE).write_text(json.dumps(asdict(recipe), indent=2) + "\n")
        if not resume or not (out / RUN_FILE).is_file():
            resolved = resolve_data_dir(data_dir)
            (out / RUN_FILE).write_text(json.dumps({"data_dir": str(resolved.resolve()) if resolved else None}) + "\n")
    stop = stop or StopRequest()
    x_all, y_all = pixels(train_x), torch.from_numpy(train_y).long()
    with _stop_signals(stop):
        while run.progress.epoch < recipe.epochs:
            # seconds already spent on this epoch before an interruption come back with the checkpoint
            started = time.perf_counter() - run.progress.sums.get("seconds", 0.0)
            with _failure_of_a_stop(stop):
                if not _train_epoch(run, x_all, y_all, stop, progress, started):
                    raise KeyboardInterrupt(f"stopped; progress saved in {ckpt_path}")
                saved = _end_epoch(run, out, test_x, test_y, time.perf_counter() - started, progress)
            if world.sum([float(stop.is_set())])[0] > 0:  # arrived during the evaluation: save the epoch's end
                if not saved:
                    run.save()
                raise KeyboardInterrupt(f"stopped; progress saved in {ckpt_path}")
    return save_model(run, out) if world.main else None


def _start_folder(recipe: Recipe, start: Path | None) -> Path:
    if start is not None:
        return Path(start)
    if not Path(recipe.init_from).is_dir():
        raise LinfdistError(f"init_from {recipe.init_from!r} is not a checkpoint folder (zoo names are resolved by "
                         "linfdist.workflows.train_and_certify and `linfdist train`)")
    return Path(recipe.init_from)


def _drop_epochs_after(metrics: Path, epoch: int) -> None:
    """Keep the log lines of epochs up to ``epoch`` (a checkpoint's): a run that died after later epochs
    were logged, but before their checkpoint, logs them again when resumed."""
    if not metrics.is_file():
        return
    lines = metrics.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
    if len(kept) < len(lines):
        with atomic_path(metrics) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))


def _end_epoch(run: Run, out: Path, test_x, test_y, seconds: float, progress: bool) -> bool:
    """Evaluate at p = ∞ with PGD, log the epoch, draw the curves (at most every CURVES_SECONDS, and after the
    last epoch) and checkpoint where due (rank 0 alone; the others wait for its checkpoint); whether it did."""
    recipe, pos = run.recipe, run.progress
    last = pos.epoch + 1 == recipe.epochs
    save = last or run.world.sum([float(run.checkpoint_time_up())])[0] > 0
    if not run.world.main:
        run.progress = Progress(pos.epoch + 1)
        if save:
            run.save()
        return save
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
    if save:
        run.save()
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
    if last or time.monotonic() - run.plotted_at > CURVES_SECONDS:
        plot_curves(read_metrics(out / METRICS), out / CURVES_FILE, recipe=asdict(recipe))
        run.plotted_at = time.monotonic()
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
    return save


@contextlib.contextmanager
def _failure_of_a_stop(stop: StopRequest):
    """An error raised once a stop was asked for is the stop's doing: Ctrl-C reaches the whole process group,
    compilers that torch.compile and Triton run in child processes included, and the step they were compiling
    for fails. It stops the run as the stop would, keeping the last checkpoint."""
    try:
        yield
    except Exception as err:
        if not stop.is_set():
            raise
        raise KeyboardInterrupt(f"stopped during a step ({type(err).__name__}: {first_line(err)}); "
                                "the last checkpoint is kept") from err


@contextlib.contextmanager
def _stop_signals(stop: StopRequest):
    """Route SIGINT and SIGTERM to ``stop`` while training (main thread only), restoring the old handlers.

    SIGTERM is what torchrun sends every rank when one fails or it is interrupted, and what job schedulers
    (SLURM, ``docker stop``, the end of a session) send before they kill: the run checkpoints and stops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def save_model(run: Run, out: Path) -> Path:
    """The trained net at p = ∞ on the CPU as a Hub-layout folder ``out/model`` (config, weights, curves)."""
    model = run.model
    model.set_p(math.inf)
    model.set_backend("auto")
    model.eval()
    model.cpu()  # the saved model is device-independent
    target = out / MODEL_DIR
    model.save_pretrained(target)
    shutil.copyfile(out / CURVES_FILE, target / CURVES_FILE)
    return target
