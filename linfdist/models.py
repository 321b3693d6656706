"""ℓ∞-dist nets (Zhang et al., ICML 2021): config-driven, Hub-ready models.

``LinfDistNet``: normalise → [ℓp-dist layer → mean shift] × (depth − 1) → ℓp-dist layer
with bias; logits are the negated last-layer distances. For p = ∞ every logit is
(1 / min std)-Lipschitz in ℓ∞ over pixel space, which the margin certificate uses.

``LinfDistNetMLP``: the same ℓ∞-dist layers as a Lipschitz feature extractor
followed by a small ReLU MLP head, certified by interval bound propagation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, save_torch_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from linfdist.data import DATASET_TABLE
from linfdist.errors import LinfdistError
from linfdist.files import umask_mode
from linfdist.nn import LpDistLinear, MeanShift, Normalize
from linfdist.rounding import matmul_error, rounding_error, widen

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: Weights above this size are written as model-0000k-of-0000n.safetensors shards plus INDEX_FILE.
SHARD_BYTES = 15 * 2**20
#: Model-card metadata that PyTorchModelHubMixin attaches to every model class.
HUB_METADATA = {"library_name": "linfdist", "tags": ["certified-robustness", "linf-dist-net"]}
#: Covers the second-order terms the first-order rounding allowances leave out.
ROUNDING_SLACK = 1.01


#: Fields a saved config.json may lack (older files): their defaults change neither weights nor certificates.
OPTIONAL_FIELDS = {"id2label"}


def _decode_float(value) -> float:
    """Accept JSON-safe spellings of ∞ ("inf", "Infinity") alongside numbers."""
    return float(value) if not isinstance(value, str) else float(value.replace("Infinity", "inf"))


@dataclass
class LinfDistNetConfig:
    """Everything needed to rebuild a LinfDistNet; round-trips through config.json."""

    architecture: str = "LinfDistNet"
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    num_classes: int = 10
    depth: int = 5
    width: int = 5120
    p: float = math.inf
    identity_value: float = 10.0
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])
    dataset: str = "mnist"
    eps: float = 0.1
    id2label: dict | None = None  # class index (as text, the Hub's convention) → name; from the dataset table

    def __post_init__(self):
        self.input_shape = [int(v) for v in self.input_shape]
        if self.id2label is None and self.dataset in DATASET_TABLE:
            classes = DATASET_TABLE[self.dataset].classes
            if len(classes) == self.num_classes:
                self.id2label = {str(i): name for i, name in enumerate(classes)}
        if self.id2label is not None and sorted(self.id2label, key=int) != [str(i) for i in range(self.num_classes)]:
            raise LinfdistError(f"config.id2label must name classes 0..{self.num_classes - 1}, got keys "
                                f"{sorted(self.id2label)}")
        self.p = _decode_float(self.p)
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        channels = self.input_shape[0]
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, channels):
                raise LinfdistError(f"config.{name} needs 1 or {channels} values, got {len(values)}")
        if min(self.std) <= 0:
            raise LinfdistError(f"config.std must be positive, got {self.std}")
        if self.depth < 1 or self.width < 1 or self.num_classes < 2:
            raise LinfdistError("config needs depth >= 1, width >= 1 and num_classes >= 2")

    def to_dict(self) -> dict:
        """A strict-JSON dict (∞ written as the string "inf")."""
        d = asdict(self)
        d["p"] = "inf" if math.isinf(self.p) else self.p
        return d

    @classmethod
    def from_dict(cls, data: dict, complete: bool = False) -> "LinfDistNetConfig":
        """Build from a dict, refusing unknown fields (they would be silently ignored) and, with
        ``complete`` (a saved config.json), missing ones: a default std or ε would change what
        the weights mean and what is certified."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinfdistError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        missing = sorted(known - set(data) - OPTIONAL_FIELDS) if complete else []
        if missing:
            raise LinfdistError(f"{cls.__name__} field(s) missing: {', '.join(missing)}")
        return cls(**data)


@dataclass
class LinfDistNetMLPConfig(LinfDistNetConfig):
    """LinfDistNet features followed by a ReLU MLP head with ``head_hidden`` units."""

    architecture: str = "LinfDistNetMLP"
    head_hidden: int = 512


def per_sample(eps, x: torch.Tensor) -> torch.Tensor:
    """ε (a number or one value per sample) shaped to broadcast against x [N, ...]."""
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return e.reshape(-1, *([1] * (x.dim() - 1)))


class _HubModel(nn.Module):
    """Shared Hub I/O: config.json in strict JSON beside the safetensors weights."""

    config_class = LinfDistNetConfig

    def _init_config(self, config) -> LinfDistNetConfig:
        if isinstance(config, dict):
            config = self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if config.architecture != type(self).__name__:
            raise LinfdistError(
                f"config describes a {config.architecture!r}, cannot build a {type(self).__name__} from it"
            )
        self.config = config
        return config

    def _save_pretrained(self, save_directory: Path) -> None:
        save_torch_state_dict(self.state_dict(), save_directory, max_shard_size=SHARD_BYTES)
        for path in weight_files(save_directory) + [Path(save_directory) / INDEX_FILE]:
            if path.is_file():
                umask_mode(path)
        text = json.dumps(self.config.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (Path(save_directory) / CONFIG_FILE).write_text(text + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """The mixin's loader, with the names a registered resolver knows (the zoo's) taken before the Hub."""
        if not Path(pretrained_model_name_or_path).is_dir():
            pretrained_model_name_or_path = _registered_folder(str(pretrained_model_name_or_path)) or \
                pretrained_model_name_or_path
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision=None, cache_dir=None, force_download=False,
                         local_files_only=False, token=None, **_):
        """Load through ``load_pretrained`` (single-file or sharded): a local folder, a name a registered
        resolver knows (the zoo's names and aliases, files checked), or a Hub repo fetched with
        snapshot_download (the HF cache, so it works offline once cached)."""
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                            force_download=force_download, local_files_only=local_files_only,
                                            token=token))
        model = load_pretrained(folder)
        if not isinstance(model, cls):
            raise LinfdistError(f"{model_id} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def set_p(self, p: float) -> None:
        """Set p on every ℓp-dist layer (p-annealing)."""
        self.config.p = float(p)
        for layer in self.modules():
            if isinstance(layer, LpDistLinear):
                layer.p = float(p)

    def set_backend(self, backend: str) -> None:
        """Pick the compute backend of every ℓp-dist layer."""
        for layer in self.modules():
            if isinstance(layer, LpDistLinear):
                layer.backend = backend


class LinfDistTrunk(nn.Module):
    """Normalisation followed by ℓp-dist layers; hidden ones are each followed by a mean shift.

    ``steps()`` is the chain in order; every step knows its interval rule, its roundings and its
    ONNX form, so the evaluations with error bounds and the export below walk it without asking
    what each step is.
    """

    def __init__(self, config: LinfDistNetConfig, n_layers: int, out_features: int, last_bias: bool):
        super().__init__()
        self.normalize = Normalize(config.input_shape, config.mean, config.std)
        widths = [math.prod(config.input_shape)] + [config.width] * (n_layers - 1) + [out_features]
        self.layers = nn.ModuleList()
        self.shifts = nn.ModuleList()
        for i in range(n_layers):
            last = i == n_layers - 1
            self.layers.append(
                LpDistLinear(widths[i], widths[i + 1], p=config.p, bias=last and last_bias,
                             identity_value=config.identity_value)
            )
            if not last:
                self.shifts.append(MeanShift(widths[i + 1]))

    def steps(self) -> list[tuple[int, nn.Module]]:
        """(index, step) in evaluation order: the normalisation, then each layer and its shift."""
        chain = [(0, self.normalize)]
        for i, layer in enumerate(self.layers):
            chain.append((i, layer))
            if i < len(self.shifts):
                chain.append((i, self.shifts[i]))
        return chain

    def input_lipschitz(self) -> float:
        """ℓ∞ Lipschitz constant of the normalisation (1 / min std)."""
        return self.normalize.lipschitz()

    def lipschitz(self) -> float:
        """ℓ∞ → ℓ∞ Lipschitz constant of each output of the trunk, in pixel space."""
        return self.input_lipschitz() * math.prod(layer.lipschitz() for layer in self.layers)

    def check_linf(self) -> None:
        """Rounding allowances are derived for p = ∞ layers only."""
        finite = [layer.p for layer in self.layers if not math.isinf(layer.p)]
        if finite:
            raise LinfdistError(f"certificates need p = inf on every layer (found p = {finite[0]:g}); "
                                "call set_p(inf)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, step in self.steps():
            x = step(x)
        return x

    def forward_with_error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunk output and a per-sample bound (float64) on how far this float evaluation is from
        exact arithmetic (p = ∞ only)."""
        self.check_linf()
        err = 0.0
        for _, step in self.steps():
            x = step(x)
            err = err + rounding_error(x, step.roundings()) + step.absolute_error(x.dtype)
        return x, err * ROUNDING_SLACK

    def rounding_sites(self) -> int:
        """Roundings along any input-to-output path whose size grows with the input (forward_with_error)."""
        return sum(step.roundings() for _, step in self.steps())

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output bounds over the pixel box [lower, upper] (inference-time shifts)."""
        for _, step in self.steps():
            lower, upper = step.interval(lower, upper)
        return lower, upper

    def interval_with_error(self, lower: torch.Tensor, upper: torch.Tensor):
        """(lo, hi, err): output bounds over the pixel box stepped outward to contain the exact-arithmetic
        ones, and a per-sample bound (float64) on a float runtime's own rounding error anywhere in the box
        (p = ∞ only)."""
        self.check_linf()
        err = 0.0
        for _, step in self.steps():
            lower, upper = widen(*step.interval(lower, upper), step.roundings())
            err = err + rounding_error(torch.maximum(lower.abs(), upper.abs()), step.roundings())
            err = err + step.absolute_error(lower.dtype)
        return lower, upper, err * ROUNDING_SLACK

    def export_onnx(self, g, h: str, index: int = 0) -> str:
        for i, step in self.steps():
            h = g.module(step, h, i)
        return h


class MLPHead(nn.Sequential):
    """Linear → ReLU → Linear on the features, certified by interval bounds in float64."""

    def __init__(self, width: int, hidden: int, classes: int):
        super().__init__(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def interval_with_error(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 IBP through the head (Linear by centre/radius, ReLU monotone), widened by the float32
        runtime's matmul rounding error (``matmul_error``)."""
        lower, upper = lower.double(), upper.double()
        for module in self:
            if isinstance(module, nn.Linear):
                center, radius = (upper + lower) / 2, (upper - lower) / 2
                magnitude = torch.maximum(lower.abs(), upper.abs())
                weight = module.weight.detach().double()
                center = center @ weight.t() + module.bias.detach().double()
                radius = radius @ weight.abs().t() + matmul_error(module.weight, magnitude, module.bias)
                lower, upper = center - radius, center + radius
            else:
                lower, upper = module(lower), module(upper)
        return lower, upper

    def export_onnx(self, g, h: str, index: int = 0) -> str:
        for i, module in enumerate(self):
            if isinstance(module, nn.Linear):
                w, b = g.weight(f"head.{i}.weight", module.weight), g.weight(f"head.{i}.bias", module.bias)
                h = g.node("Gemm", [h, w, b], f"head{i}", transB=1)
            elif isinstance(module, nn.ReLU):
                h = g.node("Relu", [h], f"head{i}")
            else:
                g.unknown(module, f"head.{i}")
        return h


class LinfDistNet(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """Plain ℓ∞-dist net; logits g(x) = −(last-layer distances + bias). Certified by the margin
    (each logit is ``lipschitz()``-Lipschitz in ℓ∞) and by interval bounds."""

    config_class = LinfDistNetConfig
    has_margin_certificate = True

    def __init__(self, config: LinfDistNetConfig):
        super().__init__()
        config = self._init_config(config)
        self.trunk = LinfDistTrunk(config, config.depth, config.num_classes, last_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.trunk(x)

    def forward_with_error(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and a per-sample bound (float64) on their distance from exact arithmetic (p = ∞)."""
        h, err = self.trunk.forward_with_error(x)
        return -h, err

    def lipschitz(self) -> float:
        """ℓ∞ Lipschitz constant of each logit w.r.t. the pixels."""
        return self.trunk.lipschitz()

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit bounds over the pixel box [lower, upper]."""
        lo, hi = self.trunk.interval(lower, upper)
        return -hi, -lo

    def logit_bounds(self, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 bounds on every logit a float runtime computes for pixel inputs within ℓ∞ distance ε
        of x, clipped to [0, 1]; ``eps`` is a number or one value per sample (p = ∞)."""
        e = per_sample(eps, x)
        lo, hi, err = self.trunk.interval_with_error((x - e).clamp(0, 1), (x + e).clamp(0, 1))
        return -hi.double() - err[:, None], -lo.double() + err[:, None]

    def export_onnx(self, g, h: str) -> str:
        return g.node("Neg", [self.trunk.export_onnx(g, h)], "negated")


class LinfDistNetMLP(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """ℓ∞-dist feature extractor (``depth`` layers of ``width``) + ReLU MLP head, certified by
    interval bounds (no margin certificate: the head is not 1-Lipschitz)."""

    config_class = LinfDistNetMLPConfig
    has_margin_certificate = False

    def __init__(self, config: LinfDistNetMLPConfig):
        super().__init__()
        config = self._init_config(config)
        self.trunk = LinfDistTrunk(config, config.depth, config.width, last_bias=False)
        self.feature_shift = MeanShift(config.width)
        self.head = MLPHead(config.width, config.head_hidden, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ℓ∞-dist features z (each coordinate trunk.lipschitz()-Lipschitz)."""
        return self.feature_shift(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def feature_interval(self, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 bounds on the features a float runtime computes for any pixel input within
        ε of x (clipped to [0, 1]); ε may be per sample. p = ∞ only.

        Intersects the Lipschitz box z ± L·ε with the IBP box through the trunk, each
        widened by the rounding allowances of ``linfdist.rounding``.
        """
        e = per_sample(eps, x)
        h, err_x = self.trunk.forward_with_error(x)
        z = self.feature_shift(h)
        err_x = err_x + rounding_error(z)
        lo, hi, err_box = self.trunk.interval_with_error((x - e).clamp(0, 1), (x + e).clamp(0, 1))
        lo, hi = widen(*self.feature_shift.interval(lo, hi))
        err_box = err_box + rounding_error(torch.maximum(lo.abs(), hi.abs()))
        reach = self.trunk.lipschitz() * e.reshape(-1, 1).double() + err_x[:, None]
        lo = torch.maximum(lo.double(), z.double() - reach) - err_box[:, None]
        hi = torch.minimum(hi.double(), z.double() + reach) + err_box[:, None]
        return lo, hi

    def head_interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 IBP through the head (``MLPHead.interval_with_error``)."""
        return self.head.interval_with_error(lower, upper)

    def logit_bounds(self, x: torch.Tensor, eps) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 bounds on every logit a float runtime computes within ε of x (see feature_interval)."""
        return self.head.interval_with_error(*self.feature_interval(x, eps))

    def export_onnx(self, g, h: str) -> str:
        h = self.trunk.export_onnx(g, h)
        h = self.feature_shift.export_onnx(g, h, 0, name="feature_shift")
        return self.head.export_onnx(g, h)


ARCHITECTURES = {"LinfDistNet": LinfDistNet, "LinfDistNetMLP": LinfDistNetMLP}


#: The entry-point group of name → folder resolvers (the zoo registers one; see pyproject.toml).
RESOLVERS_GROUP = "linfdist.model_resolvers"


def _registered_folder(name: str) -> Path | None:
    """The first folder a registered resolver gives for ``name``, else None."""
    from importlib.metadata import entry_points

    for resolver in entry_points(group=RESOLVERS_GROUP):
        folder = resolver.load()(name)
        if folder is not None:
            return Path(folder)
    return None


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: model.safetensors, or the shards its index names."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file():
        return [folder / WEIGHTS_FILE]
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise LinfdistError(f"{index}: not a safetensors index ({err})") from None


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder, single-file or sharded, with one-line errors."""
    state = {}
    for path in weight_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the checkpoint has no weights (or misses a shard)")
        try:
            state.update(load_file(path))
        except (SafetensorError, OSError) as err:
            raise LinfdistError(f"{path} is not a readable safetensors file ({err})") from None
    return state


def load_pretrained(folder: str | Path):
    """Load a Hub-layout checkpoint folder (single or sharded safetensors), picking the class from
    config.json's architecture.

    Equivalent to ``cls.from_pretrained(folder)`` for a local folder, but strict about the
    config and quiet (the mixin prints to stdout).
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: not a linfdist checkpoint folder")
    try:
        data = json.loads(config_path.read_text())
        architecture = data["architecture"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise LinfdistError(f"{config_path}: not a linfdist config ({err})") from None
    if architecture not in ARCHITECTURES:
        raise LinfdistError(f"{config_path}: unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[architecture]
    try:
        config = cls.config_class.from_dict(data, complete=True)  # the Hub mixin would drop unknown fields
    except (TypeError, ValueError) as err:
        raise LinfdistError(f"{config_path}: {err}") from None
    state = read_weights(folder)
    model = cls(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # names or shapes that do not fit the config
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[1:2])
        files = weight_files(folder)
        source = files[0] if len(files) == 1 else f"{folder} ({len(files)} shards)"
        raise LinfdistError(f"{source} does not match {config_path}: {detail}") from None
    model.eval()
    return model
