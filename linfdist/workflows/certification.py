"""Certify a checkpoint folder: export it to ONNX, then let the independent verifier derive its figures."""

from __future__ import annotations

import tempfile
from pathlib import Path

from linfdist.workflows.resolve import ModelSource

CERTIFIER_METHOD = "float64 reference, float32 rounding bounds; margin + IBP"


def onnx_file(source: ModelSource, tmp: Path) -> Path:
    """The .onnx to verify: the file itself, or the folder exported into ``tmp``."""
    from linfdist.export import export_checkpoint

    if source.is_onnx:
        return source.path
    return export_checkpoint(source.path, Path(tmp) / f"{source.path.resolve().name}.onnx")


def certify_folder(folder, images, labels, eps: float, progress: bool = True) -> dict:
    """Clean and certified accuracy (margin, IBP, either) of a checkpoint folder on (images, labels),
    derived by the independent verifier from the folder exported to ONNX."""
    from linfdist.verify.compare import verify_dataset
    from linfdist.verify.graph import load_graph
    from linfdist.verify.report import verifier_version
    from linfdist.verify.runtimes import REFERENCE, Runtime

    with tempfile.TemporaryDirectory(prefix="linfdist-certify-") as tmp:
        graph = load_graph(onnx_file(ModelSource(Path(folder), False), Path(tmp)))
        dataset = graph.metadata.get("linfdist.dataset", "")
        report = verify_dataset(graph, images, labels, eps, dataset, [Runtime(REFERENCE, "float64")],
                                progress=progress)
    return {"n": report.n, "eps": eps, "clean_accuracy": report.clean_accuracy,
            "certified_accuracy": report.certified_accuracy, "certified_accuracy_margin": report.margin_accuracy,
            "certified_accuracy_ibp": report.ibp_accuracy,
            "certifier": f"{verifier_version()} ({CERTIFIER_METHOD})"}
