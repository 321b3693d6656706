"""Training recipes: the settings of a run (``Recipe``) and the built-in catalogue.

The built-in recipes are data files, one per recipe, in ``linfdist/recipes/NAME.json``:
every field spelled out, plus an ``about`` line saying where it comes from. The
authors' names for each field are in docs/training.md.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources

from linfdist.data import DATASETS
from linfdist.errors import LinfdistError
from linfdist.losses import LOSSES
from linfdist.schedules import P_SCHEDULES

CROP_PADDINGS = ("zeros", "edge")  # what a shifted image shows at its border: zeros, or its edge pixels
ARCHITECTURE_NAMES = ("LinfDistNet", "LinfDistNetMLP")
BACKENDS = ("auto", "native", "triton", "torch", "torch-compile")
MEAN_SHIFT_STATS = ("global", "per-rank")  # distributed training: batch statistics over all ranks, or each its own
#: field → (lowest value, whether it is excluded): the ranges --set values are checked against.
_LOWER_BOUNDS = {
    "head_hidden": (1, False), "identity_value": (0, False), "eps_test": (0, False), "eps_train": (0, False),
    "eps_ramp_epochs": (0, False), "p_start": (1, False), "p_end": (1, False), "p_warm_epochs": (0, False),
    "p_inf_epochs": (0, False), "lr": (0, True), "lr_final": (0, False), "lr_hold_epochs": (0, False),
    "adam_eps": (0, True), "weight_decay": (0, False), "hinge_clip": (0, True), "logit_scale": (0, True),
    "logit_scale_lr": (0, False), "crop_pad": (0, False), "train_limit": (0, False), "eval_limit": (1, False),
    "pgd_steps": (0, False), "seed": (0, False), "depth": (1, False), "width": (1, False), "epochs": (1, False),
    "batch_size": (1, False), "p_update_epochs": (1, False), "checkpoint_minutes": (0, True),
}
_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text",
              "list[float]": "a pair of numbers such as [0.9,0.99]"}
ABOUT = "about"  # the key of a recipe file's one-line description (not a Recipe field)


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
    mean_shift_stats: str = "global"  # on several ranks: the global batch's mean ("global") or each rank's ("per-rank")
    init_from: str = ""  # a checkpoint folder or zoo name whose weights start the run (fine-tuning); "" = random init

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise LinfdistError(f"unknown recipe field(s): {', '.join(unknown)}{_did_you_mean(unknown[0], known)}")
        return cls(**data).checked()

    def checked(self) -> "Recipe":
        """This recipe, or a one-line ValueError naming the first impossible setting (types first, then ranges)."""
        self._check_types()
        for name, (low, strict) in _LOWER_BOUNDS.items():
            value = getattr(self, name)
            if value < low or (strict and value == low):
                raise LinfdistError(f"recipe field {name} must be {'>' if strict else '>='} {low:g}, got {value!r}")
        if not all(0 <= beta < 1 for beta in self.adam_betas):
            raise LinfdistError(f"adam_betas must lie in [0, 1), got {self.adam_betas}")
        for name in ("hinge_mix", "hinge_kappa"):
            if not 0 <= getattr(self, name) <= 1:
                raise LinfdistError(f"recipe field {name} must lie in [0, 1], got {getattr(self, name)!r}")
        if self.architecture not in ARCHITECTURE_NAMES:
            raise LinfdistError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURE_NAMES)}")
        if self.mean_shift_stats not in MEAN_SHIFT_STATS:
            raise LinfdistError(f"mean_shift_stats must be one of {', '.join(MEAN_SHIFT_STATS)}, "
                                f"got {self.mean_shift_stats!r}")
        if self.backend not in BACKENDS:
            raise LinfdistError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dataset not in DATASETS:
            raise LinfdistError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.loss not in LOSSES:
            raise LinfdistError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.p_schedule not in P_SCHEDULES:
            raise LinfdistError(f"p_schedule must be one of {', '.join(P_SCHEDULES)}, got {self.p_schedule!r}")
        if self.crop_padding not in CROP_PADDINGS:
            raise LinfdistError(f"crop_padding must be one of {', '.join(CROP_PADDINGS)}, got {self.crop_padding!r}")
        if self.p_inf_epochs > self.epochs:
            raise LinfdistError(f"p_inf_epochs {self.p_inf_epochs} exceeds epochs {self.epochs}")
        if self.loss == "v2" and (self.eps_train <= 0 or self.eps_ramp_epochs > 0):
            raise LinfdistError("the v2 loss divides by ε_train: it needs eps_train > 0 from the first step "
                             "(eps_ramp_epochs=0)")
        if min(self.ce_lambda_start, self.ce_lambda_end) <= 0:
            raise LinfdistError("ce_lambda_start and ce_lambda_end must be > 0 (λ decays geometrically)")
        return self

    def _check_types(self) -> None:
        """Every field of the type its annotation names (an int is taken for a float, never a bool)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
                continue
            ok = {"int": isinstance(value, int) and not isinstance(value, bool),
                  "float": isinstance(value, float), "bool": isinstance(value, bool), "str": isinstance(value, str),
                  "list[float]": isinstance(value, list) and len(value) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)}[kind]
            if not ok:
                raise LinfdistError(f"recipe field {f.name} must be {_KIND_TEXT[kind]}, got {value!r}")
            if kind == "float" and not math.isfinite(value):
                raise LinfdistError(f"recipe field {f.name} must be finite, got {value!r}")

    def with_epochs(self, epochs: int) -> "Recipe":
        """The same schedule shape over ``epochs`` epochs: every phase (p = p_start, p = ∞, the held rate,
        the ε ramp) scaled in proportion, each phase the recipe has keeping at least one epoch."""
        scale = epochs / self.epochs

        def scaled(n):
            return max(1, round(n * scale)) if n else 0

        warm = scaled(self.p_warm_epochs)
        hold = warm if self.lr_hold_epochs == self.p_warm_epochs else round(self.lr_hold_epochs * scale, 6)
        return replace(self, epochs=epochs, p_warm_epochs=warm, p_inf_epochs=scaled(self.p_inf_epochs),
                       lr_hold_epochs=float(hold), eps_ramp_epochs=round(self.eps_ramp_epochs * scale, 6)).checked()

    def override(self, assignments: list[str]) -> "Recipe":
        """A copy with ``field=value`` assignments applied (values parsed as JSON, else text)."""
        data = asdict(self)
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep:
                raise LinfdistError(f"override {item!r} is not of the form field=value")
            if key not in data:
                raise LinfdistError(f"unknown recipe field {key!r}{_did_you_mean(key, data)}")
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError:
                data[key] = raw
        return Recipe.from_dict(data)


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _load_catalogue() -> tuple[dict[str, Recipe], dict[str, str]]:
    """The recipe files shipped in ``linfdist/recipes``: (recipes, their about lines), by name."""
    recipes, about = {}, {}
    for path in sorted((resources.files("linfdist") / "recipes").iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".json"):
            continue
        data = json.loads(path.read_text())
        name = path.name[: -len(".json")]
        about[name] = data.pop(ABOUT, "")
        recipe = Recipe.from_dict(data)
        if recipe.name != name:
            raise LinfdistError(f"recipe file {path.name} names recipe {recipe.name!r}")
        recipes[name] = recipe
    return recipes, about


RECIPES, ABOUT_RECIPES = _load_catalogue()


def get_recipe(name: str) -> Recipe:
    """A built-in recipe by name; an unknown name suggests close ones."""
    if name not in RECIPES:
        close = _did_you_mean(name, RECIPES)
        raise LinfdistError(f"unknown recipe {name!r}{close or '; known: ' + ', '.join(sorted(RECIPES))}")
    return RECIPES[name]
