"""``python -m linfdist.verify MODEL.onnx``: the torch-free command line (``linfdist verify`` adds torch runtimes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from linfdist.verify import maxplus
from linfdist.verify.certificates import DOMAIN
from linfdist.verify.compare import CLAIM_TOLERANCE, merge_reports, verify_dataset
from linfdist.verify.datasets import DATASETS, DatasetError, load_dataset
from linfdist.verify.errors import Refused, first_line
from linfdist.verify.graph import Graph, load_graph
from linfdist.verify.radii import certified_radii, curve
from linfdist.verify.report import format_report, report_json
from linfdist.verify.runtimes import NAMES, REFERENCE, Runtime, ort_runtimes, unavailable
from linfdist.verify.vnnlib import write_properties


class UsageError(ValueError):
    """Bad arguments: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (exit status 2), the usage left to --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: Exit status when the model's claimed figures (its card's, carried in the ONNX metadata) disagree with
#: the ones the verifier derived on the full test split.
CLAIMS_DISAGREE = 3


def claims_disagreement(claims: dict) -> str | None:
    """One line naming each claimed figure that differs from the derived one, and by how much; None if they agree."""
    if not claims.get("checked") or claims["agrees"]:
        return None
    parts = [f"{key.replace('_', ' ')} claimed {claims['claimed'][key]:.2f}%, derived {value:.2f}% "
             f"({value - claims['claimed'][key]:+.2f} points)"
             for key, value in claims["derived"].items() if abs(value - claims["claimed"][key]) >= CLAIM_TOLERANCE]
    return "the model's claims disagree with the verifier: " + "; ".join(parts)


def eps_value(text: str) -> float:
    """An ℓ∞ radius as a number or a fraction as papers write it ("0.1", "8/255"); its range is checked later."""
    try:
        num, _, den = text.partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or fraction such as 0.3 or 8/255") from None


def eps_values(text: str) -> list[float]:
    """One or more ℓ∞ radii, comma-separated ("0.1,0.2,0.3", "2/255,8/255")."""
    values = [eps_value(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no radius")
    return values


def add_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    parser.add_argument("model", nargs="?", help=model_help)
    parser.add_argument("--dataset", choices=DATASETS, help="default: the dataset in the model's metadata")
    parser.add_argument("--force-dataset", action="store_true",
                        help="verify on --dataset even where the model's metadata names another")
    parser.add_argument("--data-dir", help="folder with the datasets (default: $LINFDIST_DATA, else bundled MNIST test)")
    parser.add_argument("--eps", type=eps_values,
                        help="ℓ∞ radius in pixel units, e.g. 0.3 or 8/255 (default: the model's trained ε); several, "
                             "comma-separated, add the certified-accuracy curve over them (the table is at the first)")
    parser.add_argument("--runtimes", default="all",
                        help=f"comma-separated, or 'all' (default): {', '.join(NAMES)}")
    parser.add_argument("--limit", type=int, help="verify only the first N test images")
    parser.add_argument("--decision-only", action="store_true",
                        help="certify only the decision (the same certified samples, no margin/IBP breakdown; the "
                             "reference alone): interval bounds only where the margin certificate leaves a sample open")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--vnnlib", metavar="DIR", help="also write one VNN-LIB property per sample (and the model) there")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def is_onnx_path(name: str | None) -> bool:
    return bool(name) and name.lower().endswith(".onnx")


def check_output_paths(args) -> None:
    """Before any work: --json must be a writable file path (a file already there only if it is an earlier
    report, so a model is never overwritten by mistake), --vnnlib a writable folder path."""
    import json

    for option, path, folder in (("--json", args.json, False), ("--vnnlib", args.vnnlib, True)):
        if path is None:
            continue
        target = Path(path)
        if folder and target.exists() and not target.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a folder")
        if not folder and target.is_dir():
            raise UsageError(f"{option} {path}: is a folder; give a file path")
        if not folder and target.exists():
            try:
                schema = json.loads(target.read_text()).get("schema", "")
            except (OSError, UnicodeDecodeError, ValueError, AttributeError):
                schema = ""
            if not str(schema).startswith("linfdist.verify/"):
                raise UsageError(f"{option} {path}: exists and is not a linfdist verify report; "
                                 "refusing to overwrite it")
        parent = (target if folder and target.is_dir() else target.parent).resolve()
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: folder {parent} does not exist")
        problem = unwritable(parent)
        if problem:
            raise UsageError(f"{option} {path}: folder {parent} is not writable ({problem})")


def unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, or None: a probe file, since permission bits alone do not
    tell (root, read-only mounts, /proc)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".linfdist-probe-"):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def requested_runtimes(value: str) -> list[str]:
    names = list(NAMES) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in names if v not in NAMES]
    if bad or not names:
        raise UsageError(f"unknown runtime(s) {', '.join(bad) or repr(value)}; choose from {', '.join(NAMES)} or all")
    return names


def _defaults(graph: Graph, args) -> tuple[str, float]:
    trained_on = graph.metadata.get("linfdist.dataset")
    dataset = args.dataset or trained_on
    if dataset not in DATASETS:
        raise UsageError(f"the model names no known dataset ({dataset!r}); pass --dataset")
    if trained_on in DATASETS and dataset != trained_on and not args.force_dataset:
        raise UsageError(f"the model was trained on {trained_on}, not {dataset}; pass --force-dataset to verify it "
                         "there anyway")
    radii = args.eps
    if radii is None:
        try:
            radii = [float(graph.metadata["linfdist.eps"])]
        except (KeyError, ValueError):
            raise UsageError("the model's metadata carries no ε; pass --eps") from None
    for eps in radii:
        if not 0 <= eps <= DOMAIN[1] - DOMAIN[0]:
            raise UsageError(f"--eps must lie in [0, 1] (the pixel range; at 1 every box is the whole domain), "
                             f"got {eps:g}")
    return dataset, radii


def run(args, onnx_path: Path, more_runtimes: Callable[[Graph], dict[str, Runtime]] | None = None,
        source: str | None = None, plot: Callable | None = None, shard: tuple[int, int] = (0, 1),
        gather: Callable | None = None) -> int:
    """Verify ``onnx_path`` as ``args`` ask; ``more_runtimes(graph)`` gives the caller's runtimes of the
    accepted graph (the torch ones; none without torch); ``source`` names what the file was exported from;
    ``plot(report, graph, path)`` draws the curve for ``--plot`` (the caller's: it needs more than numpy).

    ``shard = (rank, ranks)`` verifies only that rank's consecutive share of the test images; ``gather(part)``
    (the caller's collective) returns every rank's part, in rank order, on rank 0 and None elsewhere. Rank 0
    merges them into the report a single run prints and writes; the other ranks print nothing."""
    for name in ("limit", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    names = requested_runtimes(args.runtimes)
    if args.decision_only:
        if args.runtimes != "all" and names != [REFERENCE]:
            raise UsageError("--decision-only runs the reference alone; drop --runtimes")
        names = [REFERENCE]
    check_output_paths(args)
    graph = load_graph(onnx_path)
    dataset, radii = _defaults(graph, args)
    eps = radii[0]
    wants_curve = len(radii) > 1 or getattr(args, "plot", None)
    if getattr(args, "plot", None) and plot is None:
        raise UsageError("--plot needs `linfdist verify` (it draws with matplotlib)")
    images, labels = load_dataset(dataset, "test", args.data_dir)
    if args.limit is not None and args.limit > len(images):
        raise UsageError(f"--limit {args.limit} exceeds the {len(images)} images of the {dataset} test split")
    full = args.limit is None or args.limit >= len(images)
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    wants_ort = any(name.startswith("ort-") for name in names)
    available = {r.name: r for r in (ort_runtimes(graph) if wants_ort else [])}
    available |= more_runtimes(graph) if more_runtimes else {}
    available[REFERENCE] = Runtime(REFERENCE, f"verifier float64, {maxplus.backend()} max-plus", logits=None)
    runtimes = [available.get(name) or unavailable(name, "needs torch: use `linfdist verify`") for name in names]
    if args.runtimes != "all":
        missing = [f"{r.name} ({r.reason})" for r in runtimes if not r.available and r.name != REFERENCE]
        if missing:
            raise UsageError(f"runtime {'; '.join(missing)} cannot run here; --runtimes all lists what can")
    if REFERENCE not in names:
        runtimes.insert(0, available[REFERENCE])
    rank, ranks = shard
    mine = slice(len(images) * rank // ranks, len(images) * (rank + 1) // ranks)
    progress = not args.quiet and rank == 0
    report = verify_dataset(graph, images[mine], labels[mine], eps, dataset, runtimes, args.batch_size,
                            progress=progress, full_split=full, source=source, decision_only=args.decision_only,
                            offset=mine.start)
    radius = radii_of(graph, images[mine], labels[mine], radii, args.batch_size, progress) if wants_curve else None
    if ranks > 1:
        parts = gather((report, radius))
        if parts is None:
            return 0
        report = merge_reports([part for part, _ in parts], graph, full)
        radius = np.concatenate([r for _, r in parts]) if wants_curve else None
    if wants_curve:
        report.radii = [float(r) for r in radius]
        report.curve = curve(radius, radii)
    if args.json:  # before the table: a reader that closes the pipe early must not lose the report
        Path(args.json).write_text(report_json(report))
    print(format_report(report))
    if getattr(args, "plot", None):
        plot(report, graph, Path(args.plot))
        print(f"wrote {args.plot}")
    if args.vnnlib:
        from linfdist.verify.compare import pixels

        folder = write_properties(args.vnnlib, onnx_path, pixels(images), labels, eps, graph.num_classes,
                                  dataset=dataset)
        print(f"wrote {len(images)} VNN-LIB properties and instances.csv to {folder}")
    disagreement = claims_disagreement(report.claims)
    if disagreement:
        print(f"linfdist verify: {disagreement}", file=sys.stderr)
        return CLAIMS_DISAGREE
    return 0


def radii_of(graph: Graph, images, labels, radii, batch_size: int, progress: bool) -> np.ndarray:
    """Per-sample certified radii over the data set, in batches (``verify.radii``)."""
    from linfdist.verify.compare import pixels, progress_bar

    out = []
    bar = progress_bar(len(images), progress, "certified radii")
    for offset in range(0, len(images), batch_size):
        radius, _ = certified_radii(graph, pixels(images[offset: offset + batch_size]),
                                    labels[offset: offset + batch_size], radii)
        out.append(radius)
        if bar is not None:
            bar.update(len(radius))
    if bar is not None:
        bar.close()
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m linfdist.verify",
                                     description="Independent verifier of exported ℓ∞-dist nets (numpy + onnx).")
    add_arguments(parser, "the exported model (.onnx)")
    args = parser.parse_args(argv)
    try:
        if not is_onnx_path(args.model):
            raise UsageError("give an .onnx file; for checkpoint folders and zoo names use `linfdist verify` "
                             "(it exports them first)")
        return run(args, Path(args.model))
    except (UsageError, Refused, DatasetError, ValueError, FileNotFoundError) as err:
        print(f"linfdist.verify: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linfdist.verify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_pipe()
    except Exception as err:  # noqa: BLE001 - a bug: one line that says so, not a traceback
        return internal_error("linfdist.verify", err)


#: Exit status when the reader of stdout went away (as a process killed by SIGPIPE reports it).
CLOSED_PIPE = 141
#: Exit status of an error that is a bug in linfdist, not in the input (EX_SOFTWARE).
INTERNAL_ERROR = 70
DEBUG_VAR = "LINFDIST_DEBUG"


def internal_error(program: str, err: Exception) -> int:
    """One line naming an unexpected exception as a bug (``LINFDIST_DEBUG=1`` re-raises it for the traceback)."""
    import os

    if os.environ.get(DEBUG_VAR):
        raise err
    print(f"{program}: internal error, a bug in linfdist: {type(err).__name__}: {first_line(err)} "
          f"(please report it; {DEBUG_VAR}=1 shows the traceback)", file=sys.stderr)
    return INTERNAL_ERROR


def closed_pipe() -> int:
    """stdout's reader closed the pipe (``| head``): stop quietly, with no second error at exit."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return CLOSED_PIPE
