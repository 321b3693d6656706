"""Verify a model over a test set and compare every runtime against the float64 reference."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linfdist.verify.certificates import certify, decide, lipschitz
from linfdist.verify.datasets import DatasetError
from linfdist.verify.errors import first_line
from linfdist.verify.graph import Graph
from linfdist.verify.runtimes import REFERENCE, Runtime

#: A card's figure agrees with the derived one when they differ by less than its rounding (2 decimals).
CLAIM_TOLERANCE = 0.005 + 1e-9


@dataclass
class RuntimeResult:
    """One runtime's accuracies and its disagreements with the reference (None if unavailable)."""

    name: str
    description: str
    reason: str = ""
    clean_accuracy: float | None = None
    certified_accuracy: float | None = None
    max_abs_dlogit: float | None = None
    outside_rounding_bound: int | None = None  # samples with a logit farther from float64 than the bound
    differing: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def available(self) -> bool:
        return self.clean_accuracy is not None


FULL = "margin and IBP certificates for every sample"
DECISION = ("decision only: the margin certificate over Lipschitz boxes for every sample, interval bounds only for "
            "the correct samples it left open; no margin/IBP breakdown")


@dataclass
class Report:
    """Everything ``linfdist verify`` prints and writes as JSON."""

    model: str
    sha256: str
    dataset: str
    eps: float
    n: int
    clean_accuracy: float
    certified_accuracy: float
    margin_accuracy: float | None  #: None where only the decision was computed
    ibp_accuracy: float | None
    runtimes: list
    claims: dict
    seconds: float
    computed: str = ""  #: what the reference computed: FULL or DECISION
    classes: list | None = None  #: class names from the model's metadata (linfdist.classes), where it has them
    curve: list | None = None  #: certified accuracy at each requested ε (``--eps E1,E2,...``)
    radii: list | None = None  #: per sample, the largest ε certified (-1: none), as ``verify.radii`` finds it


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images → float32 pixels in [0, 1] (x / 255 rounded once, as torch computes it)."""
    return images.astype(np.float32) / np.float32(255)


class _Tally:
    def __init__(self, runtime: Runtime):
        self.runtime, self.correct, self.certified, self.dlogit, self.outside = runtime, 0, 0, 0.0, 0
        self.differing, self.seconds, self.failure = [], 0.0, ""

    def add(self, cert, logits: np.ndarray, offset: int, seconds: float) -> None:
        logits = np.asarray(logits)
        if logits.shape != cert.logits.shape:
            raise ValueError(f"runtime {self.runtime.name} returned logits of shape {logits.shape}, "
                             f"expected {cert.logits.shape}")
        predictions = logits.argmax(1)
        correct = predictions == cert.labels
        certified = correct & (cert.ibp | cert.runtime_margin(logits))
        gap = np.abs(logits.astype(np.float64) - cert.logits)
        bound = cert.runtime_error + cert.reference_error
        self.correct += int(correct.sum())
        self.certified += int(certified.sum())
        self.dlogit = max(self.dlogit, float(np.nan_to_num(gap, nan=np.inf).max()))
        self.outside += int((~(gap <= bound)).any(1).sum())
        self.seconds += seconds
        for i in np.flatnonzero((predictions != cert.predictions) | (certified != cert.certified)):
            self.differing.append({"index": offset + int(i), "label": int(cert.labels[i]),
                                   "reference_prediction": int(cert.predictions[i]), "prediction": int(predictions[i]),
                                   "reference_certified": bool(cert.certified[i]), "certified": bool(certified[i])})

    def result(self, n: int) -> RuntimeResult:
        return RuntimeResult(self.runtime.name, self.runtime.description, "", 100.0 * self.correct / n,
                             100.0 * self.certified / n, self.dlogit, self.outside, self.differing,
                             round(self.seconds, 3))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_dataset(graph: Graph, images: np.ndarray, labels: np.ndarray, eps: float, dataset: str,
                   runtimes: list[Runtime], batch_size: int = 500, progress: bool = True,
                   full_split: bool = False, source: str | None = None, decision_only: bool = False,
                   offset: int = 0) -> Report:
    """Certify every sample, run every available runtime on the same pixels, compare; ``full_split``
    says the whole test split is there (so the card's claims can be checked), ``source`` what the
    ONNX file was exported from. ``decision_only`` certifies with ``certificates.decide`` (the same
    decisions, no margin/IBP breakdown) and runs the reference alone. ``offset``: the index of the first
    image in the test split, for a shard of it (``merge_reports`` joins the shards' reports)."""
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need a non-empty set of images with one label each, got {len(images)} and {len(labels)}")
    if tuple(images.shape[1:]) != graph.sample_shape:  # a data set the model was not made for: the user's error
        raise DatasetError(f"{dataset} images are {tuple(images.shape[1:])}, the model takes {graph.sample_shape}")
    start = time.perf_counter()
    lips = lipschitz(graph)
    if decision_only and any(r.name != REFERENCE for r in runtimes):
        raise ValueError("decision_only runs the reference alone")
    tallies = [_Tally(r) for r in runtimes if r.available]
    counts = np.zeros(4, dtype=np.int64)  # correct, certified, margin, ibp (as in Report)
    reference_seconds = 0.0
    bar = progress_bar(len(images), progress)
    for first in range(0, len(images), batch_size):
        x = pixels(images[first: first + batch_size])
        y = labels[first: first + batch_size]
        t = time.perf_counter()
        cert = (decide if decision_only else certify)(graph, x, y, eps, lips)
        reference_seconds += time.perf_counter() - t
        counts += [cert.correct.sum(), cert.certified.sum(), cert.margin.sum(), cert.ibp.sum()]
        for tally in tallies:
            if tally.failure:
                continue
            t = time.perf_counter()
            try:
                tally.add(cert, tally.runtime.logits(x), offset + first, time.perf_counter() - t)
            except Exception as err:  # noqa: BLE001 - a runtime's own error (ORT raises its own types) is its row's
                tally.failure = f"failed at sample {offset + first}: {type(err).__name__}: {first_line(err)}"
        if bar is not None:
            bar.update(len(x))
    if bar is not None:
        bar.close()
    n = len(images)
    pct = 100.0 * counts / n
    results = []
    for runtime in runtimes:
        if runtime.name == REFERENCE:
            results.append(RuntimeResult(REFERENCE, runtime.description, "", pct[0], pct[1], 0.0, 0, [],
                                         round(reference_seconds, 3)))
        elif runtime.available:
            tally = next(t for t in tallies if t.runtime is runtime)
            results.append(RuntimeResult(runtime.name, runtime.description, tally.failure) if tally.failure
                           else tally.result(n))
        else:
            results.append(RuntimeResult(runtime.name, runtime.description, runtime.reason))
    model = str(graph.path) if source is None else f"{source} (exported to ONNX)"
    margin, ibp = (None, None) if decision_only else (float(pct[2]), float(pct[3]))
    return Report(model, sha256(graph.path), dataset, float(eps), n, float(pct[0]), float(pct[1]), margin, ibp,
                  results, _claims(graph.metadata, float(pct[0]), float(pct[1]), eps, full_split),
                  round(time.perf_counter() - start, 3), computed=DECISION if decision_only else FULL,
                  classes=_classes(graph.metadata))


def merge_reports(parts: list[Report], graph: Graph, full_split: bool) -> Report:
    """One report from those of consecutive shards of a test set (in order): the figures, per-sample lists
    and claims a run over all of it gives; times are the slowest shard's (the shards ran side by side)."""
    sizes = [part.n for part in parts]
    n = sum(sizes)

    def pooled(figures) -> float:  # each shard's percentage back to its count (exact), then over all n
        return 100.0 * sum(round(figure * size / 100) for figure, size in zip(figures, sizes)) / n

    runtimes = []
    for rows in zip(*(part.runtimes for part in parts)):
        failed = next((row for row in rows if not row.available), None)
        if failed is not None:
            runtimes.append(RuntimeResult(failed.name, failed.description, failed.reason))
            continue
        runtimes.append(RuntimeResult(
            rows[0].name, rows[0].description, "", pooled(row.clean_accuracy for row in rows),
            pooled(row.certified_accuracy for row in rows), max(row.max_abs_dlogit for row in rows),
            sum(row.outside_rounding_bound for row in rows), [d for row in rows for d in row.differing],
            max(row.seconds for row in rows)))
    first = parts[0]
    clean, certified = pooled(p.clean_accuracy for p in parts), pooled(p.certified_accuracy for p in parts)
    margin, ibp = ((None, None) if first.margin_accuracy is None else
                   (pooled(p.margin_accuracy for p in parts), pooled(p.ibp_accuracy for p in parts)))
    return Report(first.model, first.sha256, first.dataset, first.eps, n, clean, certified, margin, ibp, runtimes,
                  _claims(graph.metadata, clean, certified, first.eps, full_split), max(p.seconds for p in parts),
                  computed=first.computed, classes=first.classes)


def _classes(metadata: dict) -> list | None:
    try:
        names = json.loads(metadata["linfdist.classes"])
    except (KeyError, ValueError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _claims(metadata: dict, clean: float, certified: float, eps: float, full_split: bool) -> dict:
    """The model card's figures (carried in the ONNX metadata) against the derived ones."""
    claimed = {k: metadata.get(f"linfdist.claimed.{k}") for k in ("clean_accuracy", "certified_accuracy", "eps")}
    if claimed["certified_accuracy"] is None:
        return {"checked": False, "reason": "the model carries no claimed accuracy"}
    if not full_split:
        return {"checked": False, "reason": "only part of the test set was verified (--limit)"}
    try:
        claimed = {k: float(v) for k, v in claimed.items()}
    except (TypeError, ValueError):
        return {"checked": False, "reason": f"unreadable claims {claimed}"}
    if claimed["eps"] != eps:
        return {"checked": False, "reason": f"the card claims ε = {claimed['eps']:g}, verified at {eps:g}"}
    derived = {"clean_accuracy": clean, "certified_accuracy": certified}
    agrees = all(abs(claimed[k] - derived[k]) < CLAIM_TOLERANCE for k in derived)
    return {"checked": True, "claimed": claimed, "derived": derived, "agrees": agrees}


def progress_bar(total: int, enabled: bool, desc: str = "verify"):
    """A tqdm bar when wanted and installed (tqdm is optional for the verifier), else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False)
