"""A verification report as a readable table and as versioned JSON."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from importlib import metadata

from linfdist.verify import maxplus
from linfdist.verify.compare import Report
from linfdist.verify.rules import ELEMENTARY_ULPS

SCHEMA = "linfdist.verify/2"
#: Disagreeing samples printed per runtime (the JSON lists all).
SHOWN = 10


def verifier_version() -> str:
    try:
        return f"linfdist.verify {metadata.version('linfdist')}"
    except metadata.PackageNotFoundError:
        return "linfdist.verify (not installed)"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _named(report: Report, label: int) -> str:
    """A class index with its name, where the model's metadata names its classes."""
    names = report.classes or []
    return f"{label} {names[label]}" if 0 <= label < len(names) and names[label] != str(label) else str(label)


def format_report(report: Report) -> str:
    """Header lines, the per-runtime table, then disagreements and claims."""
    lines = [
        f"model {report.model} (sha256 {report.sha256[:12]}), {report.dataset} test, n = {report.n}, ε = {report.eps:g}"
        + (f", classes {', '.join(report.classes)}" if report.classes else ""),
        f"verifier: clean {_pct(report.clean_accuracy)}, certified {_pct(report.certified_accuracy)} "
        + (f"(margin {_pct(report.margin_accuracy)}, IBP {_pct(report.ibp_accuracy)})"
           if report.margin_accuracy is not None else "(decision only: no margin/IBP breakdown)")
        + f", {report.seconds:.1f}s",
    ]
    if report.curve:
        points = ", ".join(f"ε = {p['eps']:g}: {p['certified_accuracy']:.2f}%" for p in report.curve)
        lines.append(f"certified accuracy by radius (per-sample radii, reference): {points}")
    lines += [
        "",
    ]
    header = ["runtime", "clean", "certified", "max|Δlogit|", "beyond bound", "differ", "time", "details"]
    rows = []
    for r in report.runtimes:
        if r.available:
            rows.append([r.name, _pct(r.clean_accuracy), _pct(r.certified_accuracy), f"{r.max_abs_dlogit:.2e}",
                         str(r.outside_rounding_bound), str(len(r.differing)), f"{r.seconds:.1f}s", r.description])
        else:
            rows.append([r.name, "-", "-", "-", "-", "-", "-",
                         r.reason if r.reason.startswith("failed") else f"unavailable: {r.reason}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines += [fmt(header), fmt(["-" * w for w in widths]), *(fmt(row) for row in rows)]
    for r in report.runtimes:
        for d in r.differing[:SHOWN]:
            lines.append(f"  {r.name}: sample {d['index']} (label {_named(report, d['label'])}): prediction "
                         f"{_named(report, d['prediction'])} vs reference {_named(report, d['reference_prediction'])}, "
                         f"certified {d['certified']} vs {d['reference_certified']}")
        if len(r.differing) > SHOWN:
            lines.append(f"  {r.name}: … {len(r.differing) - SHOWN} more in the JSON report")
    claims = report.claims
    if claims.get("checked"):
        verdict = "agrees" if claims["agrees"] else "DOES NOT AGREE"
        lines.append(f"model card claims clean {_pct(claims['claimed']['clean_accuracy'])}, certified "
                     f"{_pct(claims['claimed']['certified_accuracy'])}: {verdict} with the verifier")
    else:
        lines.append(f"model card claims not checked: {claims['reason']}")
    return "\n".join(lines)


def report_json(report: Report) -> str:
    """The report as JSON (schema ``linfdist.verify/2``), with the rounding model it assumed."""
    doc = {
        "schema": SCHEMA,
        "verifier": verifier_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rounding_model": {"runtime": "IEEE float32, round to nearest, no fused or reduced-precision math",
                           "elementary_function_ulps": ELEMENTARY_ULPS,
                           "elementary_function_absolute": "2^-126 (the smallest normal float32)",
                           "overflow": "no certificate where an intermediate can reach FLT_MAX (1 - 2^-8)",
                           "reference": f"float64 ({maxplus.backend()} max-plus products)"},
        **asdict(report),
    }
    return json.dumps(doc, indent=2, default=_finite) + "\n"


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
