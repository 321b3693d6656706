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

from linfdist.errors import LinfdistError
from linfdist.nn import LpDistLinear, MeanShift
from linfdist.rounding import matmul_error, rounding_error, unit_roundoff, widen

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: Weights above this size are written as model-0000k-of-0000n.safetensors shards plus INDEX_FILE.
SHARD_BYTES = 15 * 2**20
#: Model-card metadata that PyTorchModelHubMixin attaches to every model class.
HUB_METADATA = {"library_name": "linfdist", "tags": ["certified-robustness", "linf-dist-net"]}
#: Covers the second-order terms the first-order rounding allowances leave out.
ROUNDING_SLACK = 1.01


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

    def __post_init__(self):
        self.input_shape = [int(v) for v in self.input_shape]
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
        missing = sorted(known - set(data)) if complete else []
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
        text = json.dumps(self.config.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (Path(save_directory) / CONFIG_FILE).write_text(text + "\n")

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision=None, cache_dir=None, force_download=False,
                         local_files_only=False, token=None, **_):
        """Load through ``load_pretrained`` (single-file or sharded): a local folder, or a Hub repo
        fetched with snapshot_download (the HF cache, so it works offline once cached)."""
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


def _roundings(layer: LpDistLinear) -> int:
    """Roundings producing a p = ∞ layer's output: the subtraction, and the bias add if any."""
    return 1 if layer.bias is None else 2


def _bias_error(layer: LpDistLinear, dtype: torch.dtype) -> float:
    """The part of the bias add's rounding that comes from |b| (the distance is ≤ |y| + |b|)."""
    return 0.0 if layer.bias is None else unit_roundoff(dtype) * float(layer.bias.detach().abs().max())


class LinfDistTrunk(nn.Module):
    """Normalisation followed by ℓp-dist layers; hidden ones are each followed by a mean shift."""

    def __init__(self, config: LinfDistNetConfig, n_layers: int, out_features: int, last_bias: bool):
        super().__init__()
        c, pixels = config.input_shape[0], math.prod(config.input_shape[1:])
        for name, values in (("pixel_mean", config.mean), ("pixel_std", config.std)):
            per_pixel = torch.tensor(values).expand(c).repeat_interleave(pixels)
            self.register_buffer(name, per_pixel, persistent=False)
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

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (any [N, ...] shape) → flattened, normalised [N, K]."""
        return (x.reshape(x.shape[0], -1) - self.pixel_mean) / self.pixel_std

    def input_lipschitz(self) -> float:
        """ℓ∞ Lipschitz constant of the normalisation (1 / min std)."""
        return 1.0 / float(self.pixel_std.min())

    def lipschitz(self) -> float:
        """ℓ∞ → ℓ∞ Lipschitz constant of each output of the trunk, in pixel space."""
        return self.input_lipschitz() * math.prod(layer.lipschitz() for layer in self.layers)

    def check_linf(self) -> None:
        """Rounding allowances are derived for p = ∞ layers only."""
        finite = [layer.p for layer in self.layers if not math.isinf(layer.p)]
        if finite:
            raise LinfdistError(f"certificates need p = inf on every layer (found p = {finite[0]:g}); call set_p(inf)")

    def forward(self, x: torch.Tensor, rounding: bool = False):
        """Trunk output; with ``rounding=True`` also a per-sample bound (float64) on how far
        this float evaluation is from exact arithmetic (p = ∞ only)."""
        h = self.normalize(x)
        if rounding:
            self.check_linf()
            err = rounding_error(h, 2)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if rounding:
                err = err + rounding_error(h, _roundings(layer)) + _bias_error(layer, h.dtype)
            if i < len(self.shifts):
                h = self.shifts[i](h)
                if rounding:
                    err = err + rounding_error(h)
        return (h, err * ROUNDING_SLACK) if rounding else h

    def rounding_sites(self) -> int:
        """Roundings along any input-to-output path whose size grows with the input (see forward)."""
        return 2 + sum(_roundings(layer) for layer in self.layers) + len(self.shifts)

    def interval(self, lower: torch.Tensor, upper: torch.Tensor, rounding: bool = False):
        """Output bounds over the pixel box [lower, upper] (inference-time shifts).

        With ``rounding=True`` (p = ∞ only) the bounds are stepped outward to contain the
        exact-arithmetic ones, and a per-sample bound (float64) on a float runtime's own
        rounding error anywhere in the box is returned too.
        """
        lo, hi = self.normalize(lower), self.normalize(upper)
        if rounding:
            self.check_linf()
            lo, hi = widen(lo, hi, 2)
            err = rounding_error(torch.maximum(lo.abs(), hi.abs()), 2)
        for i, layer in enumerate(self.layers):
            lo, hi = layer.interval(lo, hi)
            if rounding:
                lo, hi = widen(lo, hi, _roundings(layer))
                err = err + rounding_error(torch.maximum(lo.abs(), hi.abs()), _roundings(layer))
                err = err + _bias_error(layer, lo.dtype)
            if i < len(self.shifts):
                lo, hi = self.shifts[i].interval(lo, hi)
                if rounding:
                    lo, hi = widen(lo, hi)
                    err = err + rounding_error(torch.maximum(lo.abs(), hi.abs()))
        return (lo, hi, err * ROUNDING_SLACK) if rounding else (lo, hi)


class LinfDistNet(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """Plain ℓ∞-dist net; logits g(x) = −(last-layer distances + bias)."""

    config_class = LinfDistNetConfig

    def __init__(self, config: LinfDistNetConfig):
        super().__init__()
        config = self._init_config(config)
        self.trunk = LinfDistTrunk(config, config.depth, config.num_classes, last_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.trunk(x)

    def lipschitz(self) -> float:
        """ℓ∞ Lipschitz constant of each logit w.r.t. the pixels."""
        return self.trunk.lipschitz()

    def interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logit bounds over the pixel box [lower, upper]."""
        lo, hi = self.trunk.interval(lower, upper)
        return -hi, -lo


class LinfDistNetMLP(_HubModel, PyTorchModelHubMixin, **HUB_METADATA):
    """ℓ∞-dist feature extractor (``depth`` layers of ``width``) + ReLU MLP head."""

    config_class = LinfDistNetMLPConfig

    def __init__(self, config: LinfDistNetMLPConfig):
        super().__init__()
        config = self._init_config(config)
        self.trunk = LinfDistTrunk(config, config.depth, config.width, last_bias=False)
        self.feature_shift = MeanShift(config.width)
        self.head = nn.Sequential(
            nn.Linear(config.width, config.head_hidden), nn.ReLU(), nn.Linear(config.head_hidden, config.num_classes)
        )

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
        h, err_x = self.trunk(x, rounding=True)
        z = self.feature_shift(h)
        err_x = err_x + rounding_error(z)
        lo, hi, err_box = self.trunk.interval((x - e).clamp(0, 1), (x + e).clamp(0, 1), rounding=True)
        lo, hi = widen(*self.feature_shift.interval(lo, hi))
        err_box = err_box + rounding_error(torch.maximum(lo.abs(), hi.abs()))
        reach = self.trunk.lipschitz() * e.reshape(-1, 1).double() + err_x[:, None]
        lo = torch.maximum(lo.double(), z.double() - reach) - err_box[:, None]
        hi = torch.minimum(hi.double(), z.double() + reach) + err_box[:, None]
        return lo, hi

    def head_interval(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 IBP through the head (Linear by centre/radius, ReLU monotone), widened by the
        float32 runtime's matmul rounding error (``matmul_error``)."""
        lower, upper = lower.double(), upper.double()
        for module in self.head:
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


ARCHITECTURES = {"LinfDistNet": LinfDistNet, "LinfDistNetMLP": LinfDistNetMLP}


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
