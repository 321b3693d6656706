"""Write an ℓp-dist net as ONNX: one ``ai.linfdist::LpDist`` node per layer, standard ops elsewhere.

The file carries LpDist's FunctionProto (see ``lp_dist_function``), so any ONNX Runtime
runs it without a library of ours, and metadata a verifier needs: preprocessing, ε,
the certified accuracy the model card claims and the sha256 of the source weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from linfdist import __version__
from linfdist.errors import LinfdistError
from linfdist.export.lp_dist_function import DOMAIN, DOMAIN_VERSION, OP, lp_dist_function
from linfdist.files import CARD_FILE, atomic_path, sha256_file
from linfdist.models import ARCHITECTURES
from linfdist.nn import LpDistLinear

DEFAULT_OPSET = 18
#: The default opset of an inlined export: the newest whose ReduceMax onnx2torch 1.5 reads (checked by a test).
INLINE_OPSET = 17
OPSETS = range(13, 22)
INPUT, OUTPUT = "pixels", "logits"
#: Initializers above this many bytes go to an external data file (protobuf caps a file at 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30


class ExportError(LinfdistError):
    """The model cannot be exported faithfully; nothing was written."""


def _check_model(model) -> float:
    """The model's single p, after refusing other models, bad p and non-finite parameters (unknown layers
    are refused while the graph is built: ``_Graph.module``)."""
    if type(model) not in ARCHITECTURES.values():
        raise ExportError(f"can only export {' / '.join(ARCHITECTURES)}, got {type(model).__name__}")
    ps = {float(layer.p) for layer in model.modules() if isinstance(layer, LpDistLinear)}
    if len(ps) != 1:
        raise ExportError(f"all ℓp-dist layers must share one p, found {sorted(ps)}")
    (p,) = ps
    if math.isnan(p) or p < 1:
        raise ExportError(f"p must be >= 1 or inf, got {p}")
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not torch.isfinite(tensor).all():
            raise ExportError(f"{name} holds NaN or infinite values")
    return p


class _Graph:
    """Nodes and initializers under construction: the builder each layer's ``export_onnx(g, h, index)``
    writes itself with (values flow through as their names)."""

    def __init__(self, model):
        self.nodes, self.initializers = [], []
        self.names = {module: name for name, module in model.named_modules()}

    def weight(self, name: str, tensor: torch.Tensor) -> str:
        self.initializers.append(numpy_helper.from_array(tensor.detach().cpu().float().numpy(), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def lp_dist(self, h: str, weight: str, p: float, output: str) -> str:
        """One ``ai.linfdist::LpDist`` node (the model carries its FunctionProto once)."""
        return self.node(OP, [h, weight], output, domain=DOMAIN, p=p)

    def module(self, module: nn.Module, h: str, index: int) -> str:
        """``module`` written into the graph by its own ``export_onnx``; refused if it has none."""
        if not hasattr(module, "export_onnx"):
            self.unknown(module, self.names.get(module, type(module).__name__))
        return module.export_onnx(self, h, index)

    def unknown(self, module: nn.Module, name: str):
        raise ExportError(f"the exporter does not know layer {name} ({type(module).__name__})")


def build_onnx(model, opset: int = DEFAULT_OPSET, batch: int | None = None, metadata: dict | None = None):
    """The ModelProto of a LinfDistNet / LinfDistNetMLP (eval-mode semantics: running mean shifts)."""
    if opset not in OPSETS:
        raise ExportError(f"opset {opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1}")
    if batch is not None and batch < 1:
        raise ExportError(f"batch must be >= 1 or dynamic, got {batch}")
    p = _check_model(model)
    g = _Graph(model)
    model.export_onnx(g, INPUT)
    g.nodes[-1].output[0] = OUTPUT
    g.nodes[-1].name = OUTPUT
    config = model.config
    batch_dim = batch if batch is not None else "batch"
    graph = helper.make_graph(
        g.nodes, f"{config.architecture}-{config.dataset}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch_dim, *config.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch_dim, config.num_classes])],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)]
    proto = helper.make_model(graph, opset_imports=opsets, functions=[lp_dist_function(p, opset)],
                              producer_name="linfdist", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True))
    widest = max(layer.weight.numel() for layer in model.modules() if isinstance(layer, LpDistLinear))
    props = {
        "linfdist.version": __version__, "linfdist.architecture": config.architecture,
        "linfdist.config": _config_json(config), "linfdist.dataset": config.dataset, "linfdist.eps": repr(config.eps),
        "linfdist.p": "inf" if math.isinf(p) else repr(p), "linfdist.input": "pixels in [0, 1], NCHW float32",
        "linfdist.preprocessing": f"(x - mean) / std per channel, mean={config.mean}, std={config.std} (inside the graph)",
        "linfdist.max_layer_elements": str(widest),
        **({"linfdist.classes": json.dumps([config.id2label[str(i)] for i in range(config.num_classes)])}
           if config.id2label else {}),
        **(metadata or {}),
    }
    helper.set_model_props(proto, props)
    return proto


def _config_json(config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def inline_functions(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with every LpDist node replaced by its function body (onnx's inliner): standard ops
    only, for tools that read no FunctionProto (ONNX-to-PyTorch converters, other verifiers)."""
    from onnx import inliner

    inlined = inliner.inline_local_functions(proto)
    keep = [o for o in inlined.opset_import if o.domain != DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(keep)
    helper.set_model_props(inlined, {**{p.key: p.value for p in proto.metadata_props}, "linfdist.inlined": "true"})
    return inlined


def to_onnx(model, path, opset: int | None = None, batch: int | None = None, metadata: dict | None = None,
            inline: bool = False) -> Path:
    """Export ``model`` to ``path`` (checked with onnx.checker, full check); written atomically.

    ``inline`` replaces the LpDist nodes by their function bodies (standard ops only; opset INLINE_OPSET
    unless ``opset`` says otherwise). Initializers go to ``<name>.data`` beside it when they exceed 1 GiB.
    """
    path = Path(path)
    opset = opset or (INLINE_OPSET if inline else DEFAULT_OPSET)
    proto = build_onnx(model.eval(), opset, batch, metadata)
    if inline:
        proto = inline_functions(proto)
    external = sum(t.ByteSize() for t in proto.graph.initializer) > EXTERNAL_DATA_BYTES
    data = path.with_name(path.name + ".data")
    try:
        with atomic_path(path) as tmp:
            if external:
                onnx.save_model(proto, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data.name, size_threshold=0)
            else:
                onnx.save_model(proto, tmp)
            onnx.checker.check_model(str(tmp), full_check=True)
    except BaseException:
        if external and data.exists():
            data.unlink()
        raise
    return path


def export_checkpoint(folder, path, opset: int | None = None, batch: int | None = None,
                      inline: bool = False) -> Path:
    """Export a Hub-layout checkpoint folder, recording each weight file's sha256 and the card's claims."""
    from linfdist.models import load_pretrained, weight_files

    folder = Path(folder)
    model = load_pretrained(folder)
    metadata = {"linfdist.source_sha256": json.dumps({f.name: sha256_file(f) for f in weight_files(folder)})}
    metadata.update(_card_claims(folder))
    return to_onnx(model, path, opset, batch, metadata, inline)


def _card_claims(folder: Path) -> dict:
    """The accuracies the folder's model card states, as metadata (none if there is no card)."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        return {}
    from huggingface_hub import ModelCard

    claims = {}
    for result in ModelCard.load(card_path).data.eval_results or []:
        if result.metric_type in ("clean_accuracy", "certified_accuracy"):
            claims[f"linfdist.claimed.{result.metric_type}"] = repr(result.metric_value)
            claims["linfdist.claimed.eps"] = repr((result.metric_args or {}).get("eps"))
    return claims


__all__ = ["ExportError", "build_onnx", "export_checkpoint", "inline_functions", "to_onnx"]
