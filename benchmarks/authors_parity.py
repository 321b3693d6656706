"""Side by side: the authors' own main.py and ``linfdist train`` at the same budget, both
certified by linfdist's independent verifier on the full test set.

    python benchmarks/authors_parity.py --authors PATH --task mnist-0.3 --data-dir ../shared/data --out DIR

``--authors`` is a local clone of zbh2047/L_inf-dist-net-v2 (tasks of v2) or zbh2047/L_inf-dist-net
(tasks of v1); nothing is fetched. Their main.py runs unmodified, on the CPU, through a shim
in a child process that (1) makes ``.cuda()`` and ``torch.cuda.set_device`` no-ops, (2) stands in
for their compiled CUDA extension by routing their two distance functions (``norm_dist`` and the
p = ∞ interval bound) to linfdist's kernels, which compute the same values and gradients, and
(3) for v1, sets the module constant ``model.mlp.net_width`` (their MLP's width unit, 1024) so a
narrow net can be asked for. Their data loaders read the dataset from ``data/`` under the child's
working folder, where the IDX files are unpacked first, so torchvision never downloads.

Both runs end as Hub-layout folders (theirs converted by ``linfdist.zoo.convert``) that
``linfdist verify`` certifies in the same way; the table goes to DIR/TASK-parity.json (``--only``
runs one side and keeps the other's row from an earlier run at the same budget) and stdout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

#: task → (authors' version, torchvision dataset, our dataset, ε_test, their arguments, our recipe,
#: our extra fields).
#: {E}, {W}, {P}, {Q} are the epochs, width, last p = 8 epoch and first p = ∞ epoch of the budget, {S} the seed.
TASKS = {
    "mnist-0.3": ("v2", "MNIST", "mnist", 0.3, [
        "--dataset", "MNIST", "--model", "MLPModel(depth=5,width={W},identity_val=10.0,scalar=True)",
        "--loss", "mixture(lam0=0.05,lam_end=0.0002)", "--p-start", "8", "--p-end", "1000",
        "--epochs", "0,0,{P},{Q},{E}", "--eps-test", "0.3", "--eps-train", "0.45", "-b", "512", "--lr", "0.03",
        "--scalar-lr", "0.006", "--gpu", "0", "-p", "200", "--seed", "{S}"], "mnist-0.3", []),
    "fmnist-0.1": ("v1", "FashionMNIST", "fashion-mnist", 0.1, [
        "--model", "MLP(depth=5,width=1)", "--dataset", "FashionMNIST", "--predictor-hidden-size", "0",
        "--loss", "hinge(mix=1.0)", "--p-start", "8", "--p-end", "1000", "--epochs", "0,{P},0,{Q},{E}",
        "--kappa", "1.0", "--eps-test", "0.1", "--eps-train", "0.225", "-b", "512", "--lr", "0.02", "--wd", "5e-3",
        "--gpu", "0", "-p", "200", "--seed", "{S}"], "fmnist-0.1", ["lr_hold_epochs={P}"]),
}
THEIR_TENSORS = "model-tensors.pth"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- the child process: their main.py on the CPU ------------------------------------------------------


def _as_rows(x):
    """Their [B, C, L] layout → rows [B·L, C] for linfdist's kernels."""
    b, c, length = x.shape
    return x.permute(0, 2, 1).reshape(b * length, c), (b, length)


def _back(y, shape):
    b, length = shape
    return y.reshape(b, length, -1).permute(0, 2, 1).contiguous()


def _dist(x, weight, p, groups):
    from linfdist.functional import lp_dist

    if groups != 1:
        raise NotImplementedError("the parity shim covers groups = 1 (the MLP models) only")
    rows, shape = _as_rows(x)
    return _back(lp_dist(rows, weight, p), shape)


def _bound(lower, upper, weight, groups):
    from linfdist.functional import interval_lp_dist

    if groups != 1:
        raise NotImplementedError("the parity shim covers groups = 1 (the MLP models) only")
    lo_rows, shape = _as_rows(lower)
    lo, hi = interval_lp_dist(lo_rows, _as_rows(upper)[0], weight, float("inf"))
    return _back(lo, shape), _back(hi, shape)


def run_their_main(repo: Path, version: str, argv: list[str], net_width: int) -> None:
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.set_device = lambda *a, **k: None
    sys.path.insert(0, str(repo))
    extension = "norm_dist_cuda" if version == "v2" else "norm_dist_cpp"
    sys.modules[extension] = types.ModuleType(extension)  # never called: both entry points are replaced below
    if version == "v2":
        import core.modules  # noqa: F401 - its star import shadows the submodule's name, hence sys.modules

        for module in (sys.modules["core.norm_dist"], sys.modules["core.modules.norm_dist"]):
            module.norm_dist = lambda x, w, p, groups=1, use_custom_cuda_func=True, tag=None: _dist(x, w, p, groups)
            module.bound_inf_dist = (lambda lo, hi, w, groups=1, use_custom_cuda_func=True, tag=None:
                                     _bound(lo, hi, w, groups))
    else:
        import model.mlp
        import model.norm_dist as functions

        functions.norm_dist = lambda x, w, group, p, use_custom_cuda_func=True, tag=None: _dist(x, w, p, group)
        functions.inf_dist_bound = (lambda lo, hi, w, group, use_custom_cuda_func=True, tag=None:
                                    _bound(lo, hi, w, group))
        model.mlp.net_width = net_width
    sys.argv = [str(repo / "main.py"), *argv]
    runpy.run_path(str(repo / "main.py"), run_name="__main__")
    # v1's model.pth pickles its optimiser's modules (which `linfdist zoo convert` rightly refuses to
    # unpickle); here, beside their code, the tensors are taken out.
    (checkpoint,) = Path("result").glob("*/model.pth")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    torch.save({"state_dict": state}, THEIR_TENSORS)


# --- the parent: both runs, the verifier, the table -----------------------------------------------------


def _unpack_idx(data_dir: Path, ours: str, theirs: str, work: Path) -> None:
    """data/<theirs>/raw/ with the uncompressed IDX files torchvision looks for before downloading."""
    raw = work / "data" / theirs / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        target = raw / name
        if not target.exists():
            with gzip.open(data_dir / ours / f"{name}.gz") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _verify(folder: Path, data_dir: Path, report: Path) -> dict:
    subprocess.run([sys.executable, "-m", "linfdist", "verify", str(folder), "--data-dir", str(data_dir),
                    "--json", str(report), "--quiet"], check=True)
    return json.loads(report.read_text())


def _figures(report: dict) -> dict:
    return {"clean": report["clean_accuracy"], "certified": report["certified_accuracy"], "n": report["n"]}


def run_theirs(args, task, work: Path) -> tuple[Path, float]:
    version, tv_name, dataset, eps, their_args, _, _ = task
    _unpack_idx(args.data_dir, dataset, tv_name, work)
    fill = {"{E}": str(args.epochs), "{W}": str(args.width), "{P}": str(args.warm),
            "{Q}": str(args.epochs - args.inf), "{S}": str(args.seed)}
    argv = [_fill(a, fill) for a in their_args]
    started = time.perf_counter()
    subprocess.run([sys.executable, os.path.abspath(__file__), "_their-main", str(args.authors), version,
                    str(args.width), *argv], cwd=work, check=True)
    seconds = time.perf_counter() - started
    convert_their_checkpoint(work, dataset, eps)
    return work / "model", seconds


def convert_their_checkpoint(work: Path, dataset: str, eps: float) -> None:
    """work/model (Hub layout) from the tensors of their run's model.pth."""
    from linfdist.zoo.convert import convert_checkpoint

    convert_checkpoint(work / THEIR_TENSORS, dataset, eps).save_pretrained(work / "model")


def run_ours(args, task, work: Path) -> tuple[Path, float]:
    _, _, _, _, _, recipe, extra = task
    fields = [f"seed={args.seed}", f"width={args.width}", f"epochs={args.epochs}", f"p_warm_epochs={args.warm}",
              f"p_inf_epochs={args.inf}", *[_fill(x, {"{P}": str(args.warm)}) for x in extra]]
    sets = [item for field in fields for item in ("--set", field)]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "linfdist", "train", "--recipe", recipe, "--data-dir", str(args.data_dir),
                    "--out", str(work), "--quiet", *sets], check=True)
    return work / "model", time.perf_counter() - started


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_their-main"]:
        repo, version, width, *rest = argv[1:]
        run_their_main(Path(repo).resolve(), version, rest, int(width))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=Path, required=True, help="local clone of the authors' repository")
    parser.add_argument("--task", choices=sorted(TASKS), default="mnist-0.3")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="work folder (one subfolder per run)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warm", type=int, default=2, help="epochs at p = 8 (and, for v1, at a constant rate)")
    parser.add_argument("--inf", type=int, default=2, help="epochs at p = inf at the end")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (theirs: --seed, ours: the recipe's)")
    parser.add_argument("--only", choices=("theirs", "ours"), help="run one side only")
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    if not (args.authors / "main.py").is_file():
        parser.error(f"{args.authors} has no main.py: pass a clone of the authors' repository")
    args.data_dir = args.data_dir.resolve()
    args.authors = args.authors.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / f"{args.task}-seed{args.seed}-parity.json"
    config = {"task": args.task, "width": args.width, "epochs": args.epochs, "warm": args.warm, "inf": args.inf,
              "seed": args.seed}
    earlier = json.loads(summary.read_text()) if summary.is_file() else {}
    rows = earlier.get("runs", {}) if all(earlier.get(k) == v for k, v in config.items()) else {}
    for side, runner in (("theirs", run_theirs), ("ours", run_ours)):
        if args.only and args.only != side:
            continue
        work = args.out / f"{args.task}-seed{args.seed}-{side}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        folder, seconds = runner(args, task, work.resolve())
        rows[side] = {**_figures(_verify(folder, args.data_dir, work / "verify.json")), "train_seconds": seconds,
                      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result = {**config, "authors": str(args.authors), "date": time.strftime("%Y-%m-%d"), "runs": rows}
    summary.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | clean | certified | training (s) |\n|---|---|---|---|")
    for side, row in rows.items():
        print(f"| {side} | {row['clean']:.2f}% | {row['certified']:.2f}% | {row['train_seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
