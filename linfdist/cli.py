"""The ``linfdist`` command line: train, verify, export, zoo, bench."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

JSON_SCHEMA = "linfdist.verify/1"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with the datasets (default: $LINFDIST_DATA, else bundled MNIST test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linfdist", description="Certified-robust ℓ∞-distance nets.")
    parser.add_argument("--version", action="version", version=f"linfdist {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("verify", help="certify a model on a test set and print clean / certified accuracy")
    v.add_argument("model", nargs="?", help="checkpoint folder (config.json + model.safetensors); default: bundled model")
    v.add_argument("--dataset", choices=["mnist", "fashion-mnist", "cifar10"], help="default: the model's")
    v.add_argument("--eps", type=float, help="ℓ∞ radius in pixel units (default: the ε the model was trained for)")
    v.add_argument("--limit", type=int, help="certify only the first N test images")
    v.add_argument("--batch-size", type=int, default=500)
    v.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    _add_common(v)

    t = sub.add_parser("train", help="train a model from a recipe (resumable)")
    t.add_argument("--recipe", default="mnist-default", help="built-in recipe name (see --list-recipes)")
    t.add_argument("--list-recipes", action="store_true", help="print the built-in recipes and exit")
    t.add_argument("--out", help="run folder (default: runs/<recipe>)")
    t.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    t.add_argument("--width", type=int, help="override the recipe's layer width (the papers' is 5120)")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any recipe field")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_common(t)

    e = sub.add_parser("export", help="write a checkpoint as ONNX (ai.linfdist::LpDist with its function body)")
    e.add_argument("model", nargs="?", default="default",
                   help="checkpoint folder, or 'default' for the bundled model (default)")
    e.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset, 13..21 (default 18)")
    e.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")

    z = sub.add_parser("zoo", help="the registered certified models: list, info, download")
    zsub = z.add_subparsers(dest="zoo_command", metavar="ACTION")
    zsub.add_parser("list", help="every registered model with its dataset, ε and certified accuracy")
    for action, what in (("info", "print a model's card"), ("download", "fetch (or locate) a model and check its files")):
        zsub.add_parser(action, help=what).add_argument("name", help="model name (see `linfdist zoo list`)")
    conv = zsub.add_parser("convert", help="turn an L_inf-dist-net-v2 checkpoint (.pth) into a Hub-layout folder")
    conv.add_argument("checkpoint", help="their model.pth ({'state_dict': ...}, MLPModel)")
    conv.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist", "cifar10"])
    conv.add_argument("--eps", type=float, required=True, help="the ε it was trained for, in pixel units")
    conv.add_argument("-o", "--output", required=True, help="folder to write (config.json + model.safetensors)")
    pub = zsub.add_parser("publish", help="upload a checkpoint folder to the Hub and pin it in the registry")
    pub.add_argument("folder", help="checkpoint folder with config.json, weights and model card")
    pub.add_argument("--repo-id", required=True, help="Hub repository, owner/name")
    pub.add_argument("--name", help="registry name (default: the folder's name)")
    pub.add_argument("--dry-run", action="store_true", help="stage and check everything, upload nothing")
    pub.add_argument("--registry", help="registry file to record the upload in (default: the package's)")

    b = sub.add_parser("bench", help="time the ℓp-dist backends against torch.cdist")
    b.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    b.add_argument("--shapes", help="comma-separated sets: tiny, small, paper (default: small,paper on CUDA, small on CPU)")
    b.add_argument("--p", default="inf,8", help="comma-separated p values (default: inf,8)")
    b.add_argument("--passes", help="comma-separated: fwd, bwd, bounds, step (default: all on CUDA; fwd,bwd,bounds on CPU)")
    b.add_argument("--backends", help="comma-separated: triton, torch, torch-compile, cdist (default: all that run here, "
                                      "but not torch-compile or the Triton interpreter)")
    b.add_argument("--repeat", type=int, default=5, help="timed runs per row; the median is reported (default 5)")
    b.add_argument("--width", type=int, default=5120, help="hidden width of the step benchmark's 5-layer net")
    b.add_argument("--batch", type=int, default=512, help="batch size of the step benchmark")
    b.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def _version() -> str:
    from linfdist import __version__

    return __version__


def _set_threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def cmd_verify(args) -> int:
    from linfdist.data import load_dataset
    from linfdist.evaluate import evaluate
    from linfdist.models import load_pretrained
    from linfdist.zoo import bundled_model_dir

    for name in ("limit", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.eps is not None and args.eps < 0:
        raise CliError(f"--eps must be >= 0, got {args.eps}")
    _set_threads(args.threads)
    if args.model and args.model.endswith(".onnx"):
        raise CliError("verifying .onnx files needs the independent verifier (issue 8), not yet available")
    folder = Path(args.model) if args.model else bundled_model_dir()
    if not folder.is_dir():
        raise CliError(f"{folder} is not a checkpoint folder")
    model = load_pretrained(folder)
    dataset = args.dataset or model.config.dataset
    eps = model.config.eps if args.eps is None else args.eps
    images, labels = load_dataset(dataset, "test", args.data_dir)
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    if tuple(images.shape[1:]) != tuple(model.config.input_shape):
        raise CliError(f"{dataset} images are {images.shape[1:]}, the model expects {model.config.input_shape}")
    ev = evaluate(model, images, labels, eps, batch_size=args.batch_size, progress=not args.quiet)
    row = {"model": str(folder), "runtime": "torch-cpu", "dataset": dataset, **ev.as_dict()}
    print(format_table([row]))
    if args.json:
        report = {"schema": JSON_SCHEMA, "linfdist_version": _version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "results": [row]}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_table(rows: list[dict]) -> str:
    """A plain-text table of verification rows."""
    pct = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    header = ["model", "runtime", "dataset", "eps", "n", "clean", "certified", "margin", "IBP", "time"]
    lines = [[r["model"], r["runtime"], r["dataset"], f"{r['eps']:g}", str(r["n"]), pct(r["clean_accuracy"]),
              pct(r["certified_accuracy"]), pct(r["certified_accuracy_margin"]), pct(r["certified_accuracy_ibp"]),
              f"{r['seconds']:.1f}s"] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])


def cmd_train(args) -> int:
    from linfdist.train import RECIPES, get_recipe, train

    if args.list_recipes:
        for name, recipe in sorted(RECIPES.items()):
            print(f"{name}: {recipe.dataset}, {recipe.architecture} {recipe.depth}x{recipe.width}, "
                  f"eps {recipe.eps_test:g}, {recipe.loss} loss, {recipe.epochs} epochs")
        return 0
    _set_threads(args.threads)
    recipe = get_recipe(args.recipe)
    overrides = list(args.set) + [f"{name}={getattr(args, name)}" for name in ("epochs", "width")
                                  if getattr(args, name) is not None]
    recipe = recipe.override(overrides)
    out = Path(args.out or f"runs/{recipe.name}")
    try:
        target = train(recipe, out, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"linfdist train: interrupted; progress is saved in {out / 'checkpoint.pt'}, "
              f"continue with: linfdist train --recipe {args.recipe} --out {out} --resume (and the same options)",
              file=sys.stderr)
        return 130
    print(f"model written to {target}")
    return 0


def _csv(value: str, allowed, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise CliError(f"unknown {what} {', '.join(bad) or repr(value)}; choose from {', '.join(allowed)}")
    return items


def cmd_bench(args) -> int:
    import torch

    from linfdist import bench

    _set_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: no CUDA device is available")
    for name in ("repeat", "width", "batch"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name} must be >= 1, got {getattr(args, name)}")
    on_gpu = device == "cuda"
    sets = _csv(args.shapes or ("small,paper" if on_gpu else "small"), list(bench.SHAPES), "shape set")
    shapes = [s for name in sets for s in bench.SHAPES[name]]
    passes = _csv(args.passes or ("fwd,bwd,bounds,step" if on_gpu else "fwd,bwd,bounds"), bench.PASSES, "pass")
    try:
        ps = [float(v) for v in args.p.split(",")]
    except ValueError:
        raise CliError(f"--p must be comma-separated numbers or inf, got {args.p!r}") from None
    runnable = bench.available_backends(device)
    default = [b for b in runnable if on_gpu or b != "triton"]
    backends = _csv(args.backends or ",".join(default), bench.BACKENDS, "backend")
    missing = [b for b in backends if b not in runnable and b != "torch-compile"]
    if missing:
        raise CliError(f"backend {', '.join(missing)} cannot run on {device} here (Triton needs CUDA or TRITON_INTERPRET=1)")

    print(f"# linfdist bench on {bench.device_name(device)}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; median of {args.repeat}")
    print(bench.format_line(bench.HEADER), flush=True)
    report = lambda row: print(bench.format_line(bench.format_row(row)), flush=True)  # noqa: E731
    rows = bench.run(shapes, ps, passes, backends, device, args.repeat, args.width, args.batch, report=report)
    if args.json:
        doc = {"schema": "linfdist.bench/1", "device": bench.device_name(device), "torch": torch.__version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": [r.as_dict() for r in rows]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def cmd_export(args) -> int:
    from linfdist.export import export_checkpoint
    from linfdist.zoo import bundled_model_dir

    folder = bundled_model_dir() if args.model == "default" else Path(args.model)
    if not (folder / "config.json").is_file():
        raise CliError(f"{folder} is not a checkpoint folder (no config.json)")
    if args.batch == "dynamic":
        batch = None
    else:
        try:
            batch = int(args.batch)
        except ValueError:
            raise CliError(f"--batch must be 'dynamic' or a positive integer, got {args.batch!r}") from None
    if not args.output.endswith(".onnx"):
        raise CliError(f"--output must end in .onnx, got {args.output!r}")
    path = export_checkpoint(folder, args.output, opset=args.opset, batch=batch)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_zoo(args) -> int:
    from linfdist.zoo.registry import get_entry, load_registry, model_folder

    if args.zoo_command is None:
        raise CliError("choose an action: list, info NAME, download NAME, convert CKPT or publish DIR --repo-id ID")
    if args.zoo_command == "list":
        rows = [["name", "dataset", "eps", "architecture", "clean", "certified", "where"]]
        for e in load_registry():
            where = f"bundled ({', '.join(e.aliases)})" if e.bundled else f"{e.repo_id}@{e.revision or 'unpublished'}"
            rows.append([e.name, e.dataset, f"{e.eps:g}", e.architecture, f"{e.clean_accuracy:.2f}%",
                         f"{e.certified_accuracy:.2f}%", where])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return 0
    if args.zoo_command == "convert":
        from linfdist.zoo.convert import convert_v2

        out = Path(args.output)
        if out.exists() and any(out.iterdir()):
            raise CliError(f"{out} exists and is not empty")
        convert_v2(args.checkpoint, args.dataset, args.eps).save_pretrained(out)
        print(f"wrote {out}; certify it with: linfdist verify {out} --data-dir DATA")
        return 0
    if args.zoo_command == "publish":
        from linfdist.zoo.publish import publish

        name = args.name or Path(args.folder).resolve().name
        plan = publish(args.folder, args.repo_id, name, dry_run=args.dry_run,
                       registry=Path(args.registry) if args.registry else None)
        verb = "would upload" if args.dry_run else f"uploaded as revision {plan['revision']}"
        print(f"{name}: {verb} to {plan['repo_id']} with message {plan['commit_message']!r}:")
        for file, sha in plan["files"].items():
            print(f"  {file}  sha256 {sha}")
        return 0
    entry = get_entry(args.name)
    folder = model_folder(entry.name)
    if args.zoo_command == "info":
        print((folder / "README.md").read_text(), end="")
    else:
        print(f"{entry.name}: {len(entry.files)} files checked against the registry's sha256 in {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command
    if command is None:
        parser.print_help()
        return 2
    from linfdist.data import DatasetError

    try:
        commands = {"verify": cmd_verify, "train": cmd_train, "bench": cmd_bench, "export": cmd_export, "zoo": cmd_zoo}
        return commands[command](args)
    except (CliError, DatasetError, ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as err:
        print(f"linfdist {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"linfdist {command}: interrupted", file=sys.stderr)
        return 130
