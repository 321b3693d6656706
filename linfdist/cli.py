"""The ``linfdist`` command line: verify, certify, train, curves, export, zoo, bench — a thin layer over
``linfdist.workflows`` (parsing, a dispatch table, exit statuses)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

from linfdist.verify.cli import OneLineParser, add_arguments, eps_value
from linfdist.verify.datasets import DATASETS
from linfdist.verify.errors import first_line


def _passive_openmp_for_native_kernels() -> None:
    """Where the native kernels are built, let torch's OpenMP workers sleep after each parallel op instead
    of spinning: the kernels' own threads share the cores with them, and a spinning worker slowed a 5×1024
    training step by 1.3–1.5× (2026-11-26, 2 cores). The pure-torch path is faster spinning, so it keeps the
    default. Called by ``main`` before any command loads torch (never at import); an OMP_WAIT_POLICY the user
    set wins."""
    spec = importlib.util.find_spec("linfdist.kernels")
    folders = (spec.submodule_search_locations or []) if spec else []
    if "OMP_WAIT_POLICY" not in os.environ and any(any(Path(f).glob("_native*")) for f in folders):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


MODEL_HELP = ("a zoo name or alias, a checkpoint folder, a Hugging Face Hub repo id (owner/name; offline from the "
              "HF cache with HF_HUB_OFFLINE=1) or an .onnx file")


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder with the datasets (default: $LINFDIST_DATA, else bundled MNIST test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="linfdist", description="Certified-robust ℓ∞-distance nets.")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and CPU kernel path")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    v = sub.add_parser("verify", help="certify a model with the independent verifier; compare runtimes")
    add_arguments(v, f"{MODEL_HELP} (default: the zoo's default model)")
    v.add_argument("--plot", metavar="PNG", help="also draw certified accuracy against ε (with --eps E1,E2,...)")
    v.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    ce = sub.add_parser("certify", help="certify your own images or arrays with the independent verifier")
    ce.add_argument("inputs", nargs="+", metavar="INPUT", help="PNG/JPEG images, .npy/.npz arrays of pixels in [0, 1]")
    ce.add_argument("--model", default=None, help=f"{MODEL_HELP} (default: the zoo's default model)")
    ce.add_argument("--eps", type=eps_value, help="ℓ∞ radius in pixel units, e.g. 0.3 or 8/255 (default: the "
                                                  "model's trained ε)")
    ce.add_argument("--resize", action="store_true", help="resample images to the model's input size")
    ce.add_argument("--json", metavar="PATH", help="also write the results as JSON")

    t = sub.add_parser("train", help="train a model from a recipe (resumable)")
    t.add_argument("run", nargs="?", help="run folder (the same as --out); with --resume its recipe.json and "
                                          "recorded data folder are enough")
    t.add_argument("--recipe", help="built-in recipe name, required for a new run (see --list-recipes)")
    t.add_argument("--list-recipes", action="store_true", help="print the built-in recipes and exit")
    t.add_argument("--out", help="run folder (default: runs/<recipe>)")
    t.add_argument("--epochs", type=int, help="train for N epochs, every phase of the schedule scaled in proportion")
    t.add_argument("--width", type=int, help="override the recipe's layer width (the papers' is 5120)")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any recipe field")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to train (default: cuda when torch sees one, else cpu)")
    t.add_argument("--dist-backend", choices=["auto", "gloo", "nccl"], default="auto",
                   help="under torchrun: the process group's backend (default: nccl on cuda, gloo on cpu)")
    _add_common(t)

    c = sub.add_parser("curves", help="redraw a run's curves.png, optionally beside a published run's test log")
    c.add_argument("run", help="run folder (metrics.jsonl, recipe.json); its model/ copy is redrawn too")
    c.add_argument("--reference", metavar="LOG", help="the v2 authors' logs/<task>/test_inf.log to draw beside ours")
    c.add_argument("--reference-label", default=None,
                   help="legend name of the reference run (default: 'v2 authors (D×W)', the net of the paper "
                        "recipe the run's recipe is sized from)")
    c.add_argument("--reference-epochs", type=int, default=None,
                   help="epochs of the reference run (default: the log's last epoch)")
    c.add_argument("--base", metavar="BASE_RUN", default=None,
                   help="for a fine-tuning run: the run folder whose model/ it started from (its init_from); "
                        "that run's epochs are drawn first, and the card states both runs and reproduces both")

    e = sub.add_parser("export", help="write a checkpoint as ONNX (ai.linfdist::LpDist with its function body)")
    e.add_argument("model", nargs="?", default=None, help=f"{MODEL_HELP.split(' or an .onnx')[0]} (default: the zoo's "
                                                         "default model)")
    e.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset, 13..21 (default 18; 17 with --inline)")
    e.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size")
    e.add_argument("--inline", action="store_true", help="replace the LpDist nodes by their function bodies "
                                                         "(standard ONNX ops only, for other verifiers and converters)")

    z = sub.add_parser("zoo", help="the registered certified models: list, info, download")
    zsub = z.add_subparsers(dest="zoo_command", metavar="ACTION")
    zl = zsub.add_parser("list", help="every registered model with its dataset, ε and certified accuracy")
    zl.add_argument("--dataset", choices=DATASETS, help="only models of this data set")
    zl.add_argument("--eps", type=eps_value, help="only models certified at this ε (0.3, 8/255)")
    zl.add_argument("--json", action="store_true", help="print the entries as JSON")
    for action, what in (("info", "print a model's card"), ("download", "fetch (or locate) a model and check its files")):
        zsub.add_parser(action, help=what).add_argument("name", help="model name (see `linfdist zoo list`)")
    conv = zsub.add_parser("convert", help="turn an L_inf-dist-net (v1) or -v2 checkpoint (.pth) into a Hub-layout folder")
    conv.add_argument("checkpoint", help="their .pth ({'state_dict': ...}: v1 MLP or v2 MLPModel, recognised by its keys)")
    conv.add_argument("--dataset", required=True, choices=DATASETS)
    conv.add_argument("--eps", type=eps_value, required=True, help="the ε it was trained for, in pixel units (0.3, 8/255)")
    conv.add_argument("-o", "--output", required=True, help="folder to write (config.json + model.safetensors)")
    zsub.add_parser("sync", help="regenerate the bundled cards and the README's zoo table from the registry "
                                 "and re-pin the cards and curves (in a source checkout)")
    rec = zsub.add_parser("recertify", help="re-derive a bundled model's figures with the verifier into the "
                                            "registry; regenerate its card (in a source checkout)")
    rec.add_argument("name", help="model name (see `linfdist zoo list`)")
    _add_common(rec)
    bun = zsub.add_parser("bundle", help="ship a trained, certified checkpoint folder inside the package")
    bun.add_argument("folder", help="checkpoint folder written by linfdist train (config, weights, card, curves)")
    bun.add_argument("--name", required=True, help="registry name, also the folder's name in the zoo")
    bun.add_argument("--default", action="store_true", help="move the 'default' alias to it")
    bun.add_argument("--replaces", metavar="OLD", help="a bundled model of the same task it supersedes: takes its "
                     "place, aliases and folder, refused unless it certifies more on the same test images")
    pub = zsub.add_parser("publish", help="upload a checkpoint folder to the Hub and pin it in the registry")
    pub.add_argument("folder", help="checkpoint folder with config.json, weights and model card")
    pub.add_argument("--repo-id", required=True, help="Hub repository, owner/name")
    pub.add_argument("--name", help="registry name (default: the folder's name)")
    pub.add_argument("--dry-run", action="store_true", help="stage and check everything, upload nothing")
    pub.add_argument("--registry", help="registry file to record the upload in (default: the package's)")

    sub.add_parser("bench", add_help=False, help="time the ℓp-dist backends against torch.cdist "
                                                 "(benchmarks/bench_lp_dist.py of a source checkout; --help lists "
                                                 "its options)")
    return parser



class _VersionAction(argparse.Action):
    """--version, computed only when asked (it loads torch to report the kernel path)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from linfdist.kernels import native

        cpu = f"native {native.isa_name()}" if native.available() else f"pure torch ({native.reason()})"
        print(f"linfdist {_version()} (CPU kernels: {cpu})")
        parser.exit()


def _version() -> str:
    from linfdist import __version__

    return __version__


def _check_writable(folder: Path, what: str) -> None:
    """Before any work: ``folder`` exists (or can be made) and takes a file."""
    from linfdist.verify.cli import unwritable

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"{what} {folder}: cannot write there ({err.strerror or type(err).__name__})") from None
    problem = unwritable(folder)
    if problem:
        raise CliError(f"{what} {folder}: cannot write there ({problem})")


def _set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise CliError(f"--threads must be >= 1, got {n}")
        import torch

        torch.set_num_threads(n)


def cmd_verify(args) -> int:
    """Export the model if needed, then run the independent verifier with the torch runtimes added
    (each runs the exported file's graph)."""
    import tempfile

    from linfdist.distributed import World
    from linfdist.runtimes import torch_runtimes
    from linfdist.verify import parallel
    from linfdist.verify.cli import run
    from linfdist.workflows import onnx_file, resolve_model
    from linfdist.workflows.robustness_plot import plot_robustness

    _set_threads(args.threads)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise CliError(f"--plot must name a .png file, got {args.plot!r}")
    source = resolve_model(args.model)
    world = World.from_env("cpu", "gloo")  # under torchrun: each rank verifies its share of the test set
    if world.distributed and parallel.ENV_THREADS not in os.environ:  # the ranks on a node share its cores
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
        os.environ[parallel.ENV_THREADS] = str(max(1, parallel.cores() // local_ranks))
    with tempfile.TemporaryDirectory(prefix="linfdist-verify-") as tmp:
        return run(args, onnx_file(source, Path(tmp)), torch_runtimes, None if source.is_onnx else str(source.path),
                   plot=plot_robustness, shard=(world.rank, world.size), gather=world.gather)


def cmd_certify(args) -> int:
    """Certify the given inputs: prediction, margin, certified radii and the decision at ε, one row each."""
    import tempfile

    from linfdist.verify.cli import check_output_paths
    from linfdist.verify.graph import load_graph
    from linfdist.workflows import onnx_file, resolve_model
    from linfdist.workflows.certify_inputs import certify_inputs, load_inputs
    from linfdist.zoo.published import eps_text

    args.vnnlib = None
    check_output_paths(args)
    source = resolve_model(args.model)
    with tempfile.TemporaryDirectory(prefix="linfdist-certify-") as tmp:
        graph = load_graph(onnx_file(source, Path(tmp)))
    if len(graph.sample_shape) != 3:
        raise CliError(f"{source} takes inputs of shape {graph.sample_shape}, not images [C, H, W]")
    eps = args.eps if args.eps is not None else float(graph.metadata.get("linfdist.eps", "nan"))
    if eps != eps:
        raise CliError(f"{source} carries no ε in its metadata; pass --eps")
    inputs = load_inputs(args.inputs, graph.sample_shape, resize=args.resize)
    results = certify_inputs(graph, inputs, eps)
    if args.json:
        doc = {"schema": "linfdist.certify/1", "model": str(source), "eps": eps,
               "inputs": [r.as_dict() for r in results]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    rows = [["input", "class", "margin", "radius (margin)", "radius (IBP)", f"certified at ε = {eps_text(eps)}"]]
    rows += [[r.source, f"{r.predicted} ({r.class_name})", f"{r.margin:.4f}", f"{r.margin_radius:.4f}",
              f"{r.ibp_radius:.4f}", "yes" if r.certified else "no"] for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"model {source}; independent verifier, float64 reference with float32 rounding bounds")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_train(args) -> int:
    from linfdist.recipe import ABOUT_RECIPES, RECIPES, get_recipe
    from linfdist.workflows import train_and_certify

    if args.list_recipes:
        for name, recipe in sorted(RECIPES.items()):
            print(f"{name}: {recipe.dataset}, {recipe.architecture} {recipe.depth}x{recipe.width}, "
                  f"eps {recipe.eps_test:g}, {recipe.loss} loss, {recipe.epochs} epochs. {ABOUT_RECIPES[name]}")
        return 0
    _set_threads(args.threads)
    if args.run and args.out and Path(args.run) != Path(args.out):
        raise CliError(f"two run folders given: {args.run} and --out {args.out}")
    folder = args.run or args.out
    if args.resume and not folder:
        raise CliError("--resume needs the run folder: linfdist train RUN_DIR --resume")
    if args.resume and not args.recipe and not args.set and args.epochs is None and args.width is None:
        recipe, data_dir = _saved_run(Path(folder))
        data_dir = args.data_dir or data_dir
    else:
        if not args.recipe:
            raise CliError("--recipe NAME is required for a new run (see --list-recipes); "
                           "linfdist train RUN_DIR --resume continues one")
        recipe = get_recipe(args.recipe)
        if args.epochs is not None:
            if args.epochs < 1:
                raise CliError(f"--epochs must be >= 1, got {args.epochs}")
            recipe = recipe.with_epochs(args.epochs)
        recipe = recipe.override(list(args.set) + ([f"width={args.width}"] if args.width is not None else []))
        data_dir = args.data_dir
    out = Path(folder or f"runs/{recipe.name}")
    _check_writable(out, "run folder")
    from linfdist.distributed import World

    device = _train_device(args.device)
    world = World.from_env(device, args.dist_backend)
    # torchrun --max-restarts runs the same command again after a failure: it continues the last checkpoint
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and (out / "checkpoint.pt").is_file()
    try:
        target = train_and_certify(recipe, out, data_dir=data_dir, resume=args.resume or restarted,
                                   progress=not args.quiet, device=device, world=world)
    except KeyboardInterrupt:
        if not world.main:
            return 130
        if (out / "checkpoint.pt").is_file():
            print(f"linfdist train: interrupted; progress is saved in {out / 'checkpoint.pt'}, "
                  f"continue with: linfdist train {out} --resume", file=sys.stderr)
        else:
            print("linfdist train: interrupted before the first step; nothing to resume", file=sys.stderr)
        return 130
    if target is None:  # a rank other than 0: rank 0 certifies and reports
        return 0
    from huggingface_hub import ModelCard

    from linfdist.files import CARD_FILE

    figures = {r.metric_type: r for r in ModelCard.load(target / CARD_FILE).data.eval_results}
    clean, certified = figures["clean_accuracy"], figures["certified_accuracy"]
    print(f"model written to {target}: clean {clean.metric_value:.2f}%, certified {certified.metric_value:.2f}% at "
          f"ε = {recipe.eps_test:g} (independent verifier, {clean.metric_args['test_images']} test images)")
    return 0


def _saved_run(folder: Path):
    """(recipe, data folder) a run folder recorded when it started."""
    from linfdist.recipe import Recipe
    from linfdist.train import RECIPE_FILE, RUN_FILE

    try:
        recipe = Recipe.from_dict(json.loads((folder / RECIPE_FILE).read_text()))
    except FileNotFoundError:
        raise CliError(f"{folder / RECIPE_FILE} not found: not a linfdist train run folder") from None
    except json.JSONDecodeError as err:
        raise CliError(f"{folder / RECIPE_FILE}: not JSON ({err.msg})") from None
    run = folder / RUN_FILE
    data_dir = json.loads(run.read_text()).get("data_dir") if run.is_file() else None
    return recipe, data_dir


def cmd_curves(args) -> int:
    """Redraw RUN/curves.png (and RUN/model/curves.png), with the reference log's curves if given, and
    the model card's Training run section; with --base, a fine-tuning run after the run it started from."""
    from linfdist.curves import CURVES_FILE, chain_records, plot_curves, read_metrics, read_v2_test_log, run_summary
    from linfdist.files import CARD_FILE
    from linfdist.recipe import Recipe
    from linfdist.train import METRICS, MODEL_DIR
    from linfdist.workflows import reproduce_command
    from linfdist.zoo.card import refresh_reproduce_section, refresh_run_section

    run = Path(args.run)
    recipe = _run_recipe(run)
    epochs = recipe["epochs"]
    base, base_recipe = _base_run(Path(args.base), run, recipe) if args.base else (None, None)
    if base_recipe:
        epochs += base_recipe["epochs"]
    label = args.reference_label or _reference_label(base_recipe or recipe)
    reference = read_v2_test_log(Path(args.reference), label, args.reference_epochs) if args.reference else None
    records = chain_records(base or [], read_metrics(run / METRICS))
    fine_tuned_after = base[-1]["epoch"] if base else None
    targets = [run / CURVES_FILE] + ([run / MODEL_DIR / CURVES_FILE] if (run / MODEL_DIR).is_dir() else [])
    for target in targets:
        plot_curves(records, target, reference=reference, total_epochs=epochs, recipe=recipe,
                    fine_tuned_after=fine_tuned_after)
        print(f"wrote {target}")
    card = run / MODEL_DIR / CARD_FILE
    if card.is_file():
        refresh_run_section(card.parent, run_summary(records, base_recipe or recipe, fine_tuned_after))
        print(f"updated the Training run section of {card}")
        if base:
            first = reproduce_command(Recipe.from_dict(base_recipe), run="BASE_RUN")
            then = reproduce_command(Recipe.from_dict({**recipe, "init_from": "BASE_RUN/model"}))
            refresh_reproduce_section(card.parent, [first, then])
            print(f"updated the Reproduce section of {card}: both runs")
    return 0


def _base_run(base: Path, run: Path, recipe: dict) -> tuple[list[dict], dict]:
    """The records and recipe of the run folder ``base``, once ``run`` (with ``recipe``) is seen to have
    started from its model."""
    from linfdist.curves import read_metrics
    from linfdist.train import METRICS, MODEL_DIR

    base_recipe = _run_recipe(base)
    start = recipe.get("init_from") or ""
    if not start or Path(start).resolve() != (base / MODEL_DIR).resolve():
        raise CliError(f"{run} started from {start or 'random weights'!r}, not from {base / MODEL_DIR}: --base "
                       "names the run whose model a fine-tuning run started from")
    return read_metrics(base / METRICS), base_recipe


def _run_recipe(run: Path) -> dict:
    """The recipe.json of a ``linfdist train`` run folder (which must have its metrics.jsonl too)."""
    import json

    from linfdist.train import METRICS, RECIPE_FILE

    for name in (METRICS, RECIPE_FILE):
        if not (run / name).is_file():
            raise CliError(f"{run / name} not found: not a linfdist train run folder")
    return json.loads((run / RECIPE_FILE).read_text())


def _reference_label(recipe: dict) -> str:
    """"v2 authors (D×W)" with the net of the paper recipe a run's recipe is (NAME, which NAME-cpu sizes for
    the CPU), "v2 authors" for any other recipe."""
    from linfdist.recipe import RECIPES

    papers = {name.removesuffix("-cpu") for name in RECIPES if name.endswith("-cpu")} & set(RECIPES)
    name = recipe.get("name", "").removesuffix("-cpu")
    return f"v2 authors ({RECIPES[name].depth}×{RECIPES[name].width})" if name in papers else "v2 authors"


def _train_device(choice: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def cmd_bench(args) -> int:
    """Run the development benchmark ``benchmarks/bench_lp_dist.py`` of the source checkout."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lp_dist.py"
    if not script.is_file():
        raise CliError(f"linfdist bench runs benchmarks/bench_lp_dist.py of a source checkout; {script} is not there "
                       "(install linfdist from a clone with pip install -e .)")
    spec = importlib.util.spec_from_file_location("bench_lp_dist", script)
    module = sys.modules.setdefault("bench_lp_dist", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    try:
        return module.main(args.options)
    except module.BenchError as err:
        raise CliError(str(err)) from None


def cmd_export(args) -> int:
    from linfdist.export import export_checkpoint
    from linfdist.workflows import resolve_folder

    if args.batch == "dynamic":
        batch = None
    else:
        try:
            batch = int(args.batch)
        except ValueError:
            raise CliError(f"--batch must be 'dynamic' or a positive integer, got {args.batch!r}") from None
    if not args.output.endswith(".onnx"):
        raise CliError(f"--output must end in .onnx, got {args.output!r}")
    if not Path(args.output).parent.is_dir():
        raise CliError(f"--output {args.output}: folder {Path(args.output).parent} does not exist")
    _check_writable(Path(args.output).parent, "--output")
    path = export_checkpoint(resolve_folder(args.model), args.output, opset=args.opset, batch=batch, inline=args.inline)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def zoo_list(args) -> int:
    import math
    from dataclasses import asdict

    from linfdist.zoo.published import eps_text, published
    from linfdist.zoo.registry import load_registry

    entries = [e for e in load_registry() if (args.dataset is None or e.dataset == args.dataset)
               and (args.eps is None or math.isclose(e.eps, args.eps, rel_tol=1e-6))]
    best = {e.name: max(published(e.dataset, e.eps), key=lambda f: f.certified, default=None) for e in entries}
    if args.json:
        doc = [{**asdict(e), "eps_text": eps_text(e.eps),
                "best_published": asdict(best[e.name]) if best[e.name] else None} for e in entries]
        print(json.dumps(doc, indent=2))
        return 0
    rows = [["name", "dataset", "eps", "architecture", "clean", "certified", "best published", "where"]]
    for e in entries:
        aliases = f" ({', '.join(e.aliases)})" if e.aliases else ""
        where = f"bundled{aliases}" if e.bundled else f"{e.repo_id}@{e.revision or 'unpublished'}"
        paper = f"{best[e.name].certified:.2f}% ({best[e.name].paper})" if best[e.name] else "-"
        rows.append([e.name, e.dataset, eps_text(e.eps), e.architecture, f"{e.clean_accuracy:.2f}%",
                     f"{e.certified_accuracy:.2f}%", paper, where])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def zoo_info(args) -> int:
    from linfdist.files import CARD_FILE
    from linfdist.zoo.registry import get_entry, model_folder

    print((model_folder(get_entry(args.name).name) / CARD_FILE).read_text(), end="")
    return 0


def zoo_download(args) -> int:
    from linfdist.zoo.registry import get_entry, model_folder

    entry = get_entry(args.name)
    folder = model_folder(entry.name)
    print(f"{entry.name}: {len(entry.files)} files checked against the registry's sha256 in {folder}")
    return 0


def zoo_convert(args) -> int:
    from linfdist.zoo.convert import convert_checkpoint

    out = Path(args.output)
    if out.exists() and any(out.iterdir()):
        raise CliError(f"{out} exists and is not empty")
    convert_checkpoint(args.checkpoint, args.dataset, args.eps).save_pretrained(out)
    print(f"wrote {out}; certify it with: linfdist verify {out} --data-dir DATA")
    return 0


def zoo_recertify(args) -> int:
    from linfdist.workflows import recertify

    _set_threads(args.threads)
    entry = recertify(args.name, args.data_dir, progress=not args.quiet)
    print(f"{entry.name}: clean {entry.clean_accuracy:.2f}%, certified {entry.certified_accuracy:.2f}% at "
          f"ε = {entry.eps:g} ({entry.certifier}); registry and card updated (`linfdist zoo sync` for the README)")
    return 0


def zoo_sync(args) -> int:
    from linfdist.workflows import sync_zoo

    changed = sync_zoo()
    print("\n".join(f"rewrote {path}" for path in changed) or "cards, their pins and the README already match the registry")
    return 0


def zoo_bundle(args) -> int:
    from linfdist.zoo.bundle import bundle

    entry = bundle(args.folder, args.name, make_default=args.default, replaces=args.replaces)
    if args.replaces:
        print(f"{entry.name}: replaces {args.replaces} in the registry and the zoo folder")
    print(f"{entry.name}: bundled with {len(entry.files)} files, certified {entry.certified_accuracy:.2f}% at "
          f"ε = {entry.eps:g} (from its card); re-derive with: linfdist zoo recertify {entry.name}")
    return 0


def zoo_publish(args) -> int:
    from linfdist.zoo.publish import publish

    name = args.name or Path(args.folder).resolve().name
    plan = publish(args.folder, args.repo_id, name, dry_run=args.dry_run,
                   registry=Path(args.registry) if args.registry else None)
    verb = "would upload" if args.dry_run else f"uploaded as revision {plan['revision']}"
    print(f"{name}: {verb} to {plan['repo_id']} with message {plan['commit_message']!r}:")
    for file, sha in plan["files"].items():
        print(f"  {file}  sha256 {sha}")
    return 0


ZOO_ACTIONS = {"list": zoo_list, "info": zoo_info, "download": zoo_download, "convert": zoo_convert,
               "recertify": zoo_recertify, "sync": zoo_sync, "bundle": zoo_bundle, "publish": zoo_publish}


def cmd_zoo(args) -> int:
    if args.zoo_command is None:
        raise CliError(f"choose an action: {', '.join(ZOO_ACTIONS)}")
    return ZOO_ACTIONS[args.zoo_command](args)


COMMANDS = {"verify": cmd_verify, "certify": cmd_certify, "train": cmd_train, "curves": cmd_curves,
            "export": cmd_export, "zoo": cmd_zoo, "bench": cmd_bench}


def _user_errors() -> tuple[type[BaseException], ...]:
    """What bad input raises: printed as one line with exit status 2. Anything else is a bug."""
    from linfdist.errors import LinfdistError
    from linfdist.verify.cli import UsageError
    from linfdist.verify.datasets import DatasetError
    from linfdist.verify.errors import Refused

    return (CliError, LinfdistError, UsageError, DatasetError, Refused, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError, FloatingPointError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command != "bench" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.options = extra  # bench's own options (its script parses them)
    if args.command is None:
        parser.print_help()
        return 2
    _passive_openmp_for_native_kernels()
    from linfdist.verify.cli import closed_pipe, internal_error

    program = f"linfdist {args.command}"
    user_errors = _user_errors()
    try:
        return COMMANDS[args.command](args)
    except user_errors as err:
        print(f"{program}: error: {first_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_pipe()
    except Exception as err:  # noqa: BLE001 - a bug: one line that says so, not a traceback
        return internal_error(program, err)
