"""Training schedules, augmentation, loss, recipes and the loop; train_and_certify's card."""

import json
import math
import os
import signal

import pytest
import torch

from linfdist.augment import random_crop, random_flip
from linfdist.device import device_name
from linfdist.losses import v2_mixture_loss
from linfdist.models import load_pretrained
from linfdist.schedules import ce_lambda_at, eps_at, lr_at, p_at
from linfdist.train import RECIPES, Recipe, Run, StopRequest, build_model, get_recipe, start_from, train
from linfdist.workflows import reproduce_command, resolve_folder, train_and_certify


def test_per_epoch_p_schedule_holds_p_within_an_epoch():
    r = Recipe(epochs=20, p_start=8, p_end=1000, p_warm_epochs=2, p_inf_epochs=3, p_update_epochs=1,
               p_schedule="per-epoch", p_integer=True)
    ps = [p_at(r, e) for e in range(20)]
    assert ps[:2] == [8.0, 8.0] and ps[2] == 8.0
    assert ps[16] == 1000.0 and all(math.isinf(p) for p in ps[17:])
    finite = ps[2:17]
    assert all(a < b for a, b in zip(finite, finite[1:]))
    assert all(p == int(p) for p in finite)
    assert p_at(r, 5.3) == p_at(r, 5.9), "p is constant within an epoch"


def test_per_step_p_schedule_grows_continuously():
    r = Recipe(epochs=20, p_start=8, p_end=1000, p_warm_epochs=2, p_inf_epochs=3)
    assert p_at(r, 1.99) == 8.0 and p_at(r, 2.0) == 8.0 and math.isinf(p_at(r, 17.0))
    assert p_at(r, 5.3) < p_at(r, 5.9) and p_at(r, 16.999) == pytest.approx(1000, rel=1e-3)
    assert p_at(r, 9.5) == pytest.approx(math.sqrt(8 * 1000))  # geometric: halfway is the geometric mean


def test_eps_ramp_and_cosine_lr():
    r = Recipe(eps_train=0.3, eps_ramp_epochs=4, epochs=10, lr=0.02, lr_final=0.0)
    assert eps_at(r, 0) == 0 and eps_at(r, 2) == pytest.approx(0.15) and eps_at(r, 7) == 0.3
    assert lr_at(r, 0) == pytest.approx(0.02) and lr_at(r, 5) == pytest.approx(0.01) and lr_at(r, 10) == pytest.approx(0)


def test_random_crop_shifts_within_the_padding():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 1, g)
    assert y.shape == x.shape and torch.equal(y.sum((1, 2, 3)), x.sum((1, 2, 3)))
    rows, cols = y[:, 0].nonzero()[:, 1], y[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}


def test_edge_padding_repeats_the_border_pixels():
    x = torch.rand(32, 3, 5, 5)
    g = torch.Generator().manual_seed(1)
    y = random_crop(x, 2, g, padding="edge")
    expected = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    windows = expected.unfold(2, 5, 1).unfold(3, 5, 1)  # every 5 x 5 crop of each padded image
    for image, crop in zip(windows, y):
        assert any(torch.equal(image[:, i, j], crop) for i in range(5) for j in range(5))
    assert not torch.equal(random_crop(x, 2, torch.Generator().manual_seed(1)), y)  # zeros differ
    with pytest.raises(ValueError, match="crop_padding"):
        Recipe(crop_padding="reflect").checked()


def test_recipes_build_their_models():
    for name, recipe in RECIPES.items():
        small = recipe.override(["width=16"]) if recipe.width > 1024 else recipe  # paper widths are GPU-sized
        model = build_model(small)
        assert model.config.width == small.width and model.config.eps == recipe.eps_test, name
        assert model.config.depth == recipe.depth and model.config.dataset == recipe.dataset, name
    assert build_model(Recipe(architecture="LinfDistNetMLP", width=8, depth=2)).config.head_hidden == 512
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(Recipe(architecture="VGG"))


def test_overrides_and_reproduce_command():
    r = get_recipe("mnist-smoke").override(["epochs=3", "lr=0.5", "backend=torch"])
    assert (r.epochs, r.lr, r.backend) == (3, 0.5, "torch")
    assert reproduce_command(r) == "linfdist train --recipe mnist-smoke --data-dir DATA --set epochs=3 --set lr=0.5 --set backend=torch"
    with pytest.raises(ValueError, match="unknown recipe field"):
        Recipe.from_dict({"epochz": 1})


def test_v2_loss_normalises_the_hinge_by_the_shift_and_decays_ce_over_the_annealing():
    r = Recipe(loss="v2", ce_lambda_start=0.1, ce_lambda_end=0.001, epochs=10, p_warm_epochs=2, p_inf_epochs=2)
    assert ce_lambda_at(r, 0) == ce_lambda_at(r, 2) == pytest.approx(0.1)
    assert ce_lambda_at(r, 5) == pytest.approx(0.01) and ce_lambda_at(r, 8) == ce_lambda_at(r, 10) == pytest.approx(0.001)
    labels, scale = torch.tensor([0]), torch.tensor(1.0)
    hopeless = torch.tensor([[0.0, 5.0]], requires_grad=True)  # short of the shift by more than clip · shift
    hinge_only = v2_mixture_loss(hopeless, labels, 0.2, 1.0, 1e-30, scale)
    assert hinge_only.item() == pytest.approx(1.0)
    (grad,) = torch.autograd.grad(hinge_only, hopeless)
    assert grad.abs().max() < 1e-25
    near = torch.tensor([[1.0, 0.9]], requires_grad=True)  # margin 0.1 of a 0.2 shift: half-way, pushed apart
    loss = v2_mixture_loss(near, labels, 0.2, 1.0, 1e-30, scale)
    assert loss.item() == pytest.approx(0.5)
    (grad,) = torch.autograd.grad(loss, near)
    assert grad[0, 0] == pytest.approx(-5.0) and grad[0, 1] == pytest.approx(5.0)
    certified = torch.tensor([[1.0, 0.0]], requires_grad=True)  # margin 1 beyond the shift: nothing to gain
    assert v2_mixture_loss(certified, labels, 0.2, 1.0, 1e-30, scale).item() == pytest.approx(0, abs=1e-25)


def test_random_flip_mirrors_about_half():
    x = torch.arange(4.0).repeat(200, 1, 1, 1)
    y = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (y[:, 0, 0, 0] == 3).sum().item()
    assert 70 < flipped < 130 and torch.equal(y[y[:, 0, 0, 0] == 3], x[:1].flip(-1).expand(flipped, 1, 1, 4))


@pytest.mark.parametrize("assignment, message", [
    ("loss=v3", "unknown loss"), ("dataset=imagenet", "unknown dataset"), ("width=0", "width must be >= 1"),
    ("p_inf_epochs=99", "exceeds epochs"), ("checkpoint_minutes=0", "checkpoint_minutes"),
    ("p_schedule=sometimes", "p_schedule"), ("eps_ramp_epochs=2", "eps_ramp_epochs=0"),
    ("ce_lambda_end=0", "must be > 0"),
])
def test_impossible_recipes_are_refused(assignment, message):
    with pytest.raises(ValueError, match=message):
        get_recipe("mnist-smoke").override([assignment])


def _smoke(**changes):
    fields = {"epochs": 2, "train_limit": 384, "eval_limit": 100, "pgd_steps": 2, "backend": "torch", **changes}
    return get_recipe("mnist-smoke").override([f"{k}={v}" for k, v in fields.items()])


class StopAfter(StopRequest):
    """Ask the loop to stop after ``n`` steps (what SIGINT does)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def is_set(self):
        self.n -= 1
        return self.n < 0


def _logged(model_dir):
    """The metrics.jsonl records of the run a model folder came from."""
    return [json.loads(x) for x in (model_dir.parent / "metrics.jsonl").read_text().splitlines()]


def _untimed(record):
    """An epoch's record without what depends on the clock."""
    return {k: v for k, v in record.items() if k not in ("seconds", "finished")}


def test_interrupted_and_resumed_run_ends_with_identical_weights(shared_data, tmp_path):
    """Stop mid-epoch (step 4 of 6) and mid-way through epoch 2, resume each time: same weights bit for bit."""
    from safetensors.torch import load_file

    recipe = _smoke()
    straight = train(recipe, tmp_path / "straight", data_dir=shared_data, progress=False)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out, data_dir=shared_data, progress=False, stop=StopAfter(3))
    spent = torch.load(out / "checkpoint.pt", weights_only=True)["sums"]["seconds"]
    assert spent > 0  # the epoch's clock travels with the checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out, data_dir=shared_data, resume=True, progress=False, stop=StopAfter(5))
    resumed = train(recipe, out, data_dir=shared_data, resume=True, progress=False)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [_untimed(r) for r in _logged(straight)] == [_untimed(r) for r in _logged(resumed)]
    assert _logged(resumed)[0]["seconds"] > spent


def test_checkpoints_follow_checkpoint_minutes_not_every_epoch(shared_data, tmp_path, monkeypatch):
    """With checkpoint_minutes not yet up, epochs end without a checkpoint (a second's GPU epoch would pay
    for one each); the run still ends with one after its last epoch."""
    import linfdist.train as training

    saves = []
    real_save = training.Run.save
    monkeypatch.setattr(training.Run, "save", lambda run: (saves.append(run.progress.epoch), real_save(run)))
    train(_smoke(epochs=3, checkpoint_minutes=60), tmp_path / "run", data_dir=shared_data, progress=False)
    assert saves == [3]


def test_a_stop_during_an_evaluation_that_checkpoints_saves_once(shared_data, tmp_path, monkeypatch):
    """SIGINT while the last epoch is evaluated: the epoch's own checkpoint is the one written; --resume then
    only writes the model folder."""
    import linfdist.train as training

    saves, stop = [], StopRequest()
    real_save, real_evaluate = training.Run.save, training.evaluate_at_linf
    monkeypatch.setattr(training.Run, "save", lambda run: (saves.append(run.progress.epoch), real_save(run)))

    def evaluate_then_interrupt(model, images, labels, recipe, progress, seed=0):
        if seed == recipe.seed + recipe.epochs - 1:
            stop()
        return real_evaluate(model, images, labels, recipe, progress, seed)

    monkeypatch.setattr(training, "evaluate_at_linf", evaluate_then_interrupt)
    recipe = _smoke(epochs=2, checkpoint_minutes=60)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, tmp_path / "run", data_dir=shared_data, progress=False, stop=stop)
    assert saves == [2]
    model = train(recipe, tmp_path / "run", data_dir=shared_data, resume=True, progress=False)
    assert saves == [2] and [r["epoch"] for r in _logged(model)] == [1, 2]


def test_a_run_that_died_after_logging_later_epochs_logs_them_once(shared_data, tmp_path):
    """A run killed (no SIGINT) after epochs its checkpoint does not hold were logged: --resume continues
    from the checkpoint, drops those log lines and logs the epochs again, as a straight run logs them."""
    import shutil

    from safetensors.torch import load_file

    recipe = _smoke(epochs=3, checkpoint_minutes=60)
    straight = train(recipe, tmp_path / "straight", data_dir=shared_data, progress=False)
    out = tmp_path / "died"
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out, data_dir=shared_data, progress=False, stop=StopAfter(3))  # a checkpoint in epoch 1
    shutil.copy(out / "checkpoint.pt", tmp_path / "early.pt")
    train(recipe, out, data_dir=shared_data, resume=True, progress=False)  # epochs 1-3 logged
    shutil.copy(tmp_path / "early.pt", out / "checkpoint.pt")  # as if it had died before any later checkpoint
    resumed = train(recipe, out, data_dir=shared_data, resume=True, progress=False)
    assert [r["epoch"] for r in _logged(resumed)] == [1, 2, 3]
    assert [_untimed(r) for r in _logged(straight)] == [_untimed(r) for r in _logged(resumed)]
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_a_checkpoint_and_stops(shared_data, tmp_path, monkeypatch, sig):
    """A real SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop) during training: checkpoint written,
    KeyboardInterrupt raised, both handlers restored."""
    import linfdist.train as training

    real_step = training.training_loss
    calls = []

    def step_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "training_loss", step_then_interrupt)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        train(_smoke(), tmp_path / "run", data_dir=shared_data, progress=False)
    assert {s: signal.getsignal(s) for s in before} == before
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 2)


@pytest.mark.parametrize("stopped", [True, False])
def test_a_step_that_fails_after_a_stop_stops_the_run(shared_data, tmp_path, monkeypatch, stopped):
    """Ctrl-C reaches the compilers' child processes too (torch.compile, Triton): the step they compiled for
    fails, and that failure is the stop's, not a bug; without a stop the error is the error."""
    import linfdist.train as training

    stop, calls, real_step = StopRequest(), [], training.training_loss

    def step_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            if stopped:
                stop()
            raise RuntimeError("C++ compile error\n(the compiler was interrupted)")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "training_loss", step_then_fail)
    expected = KeyboardInterrupt if stopped else RuntimeError
    with pytest.raises(expected, match="compile error") as raised:
        train(_smoke(), tmp_path / "run", data_dir=shared_data, progress=False, stop=stop)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # the failed step saved nothing
    if stopped:  # one line: the error's first
        assert str(raised.value).endswith("C++ compile error); the last checkpoint is kept")


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(shared_data, tmp_path, monkeypatch):
    import linfdist.train as training

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_smoke(), out, data_dir=shared_data, progress=False, stop=StopAfter(7))  # into epoch 2
    good = (out / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(training, "training_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        train(_smoke(), out, data_dir=shared_data, progress=False, resume=True)
    assert (out / "checkpoint.pt").read_bytes() == good


def test_epoch_records_pgd_and_curves(shared_data, tmp_path):
    out = tmp_path / "run"
    train_and_certify(_smoke(), out, data_dir=shared_data, progress=False)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert r["test_pgd_violations"] == 0
        assert r["test_pgd_accuracy"] >= r["test_certified_accuracy"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(r["device"] == device_name("cpu") and r["finished"].endswith("Z") for r in records)
    model = out / "model"
    assert (model / "curves.png").read_bytes() == (out / "curves.png").read_bytes()
    run = (model / "README.md").read_text().split("## Training run", 1)[1].split("## Reproduce")[0]
    wall = sum(r["seconds"] for r in records)
    assert "| epochs | 2 |" in run and f"| {device_name('cpu')} |" in run and records[-1]["finished"] in run
    assert f"| wall time | {round(wall) // 3600} h {round(wall) % 3600 // 60:02d} min" in run


def _png_width(path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


def test_curves_beside_a_published_log(shared_data, tmp_path, capsys):
    """`linfdist curves RUN --reference LOG` adds a panel (wider PNG) to the run's and its model's curves."""
    from linfdist.cli import main

    out = tmp_path / "run"
    train_and_certify(_smoke(), out, data_dir=shared_data, progress=False)
    plain = _png_width(out / "curves.png")
    log = tmp_path / "test_inf.log"
    log.write_text("epoch\tacc\tcertified\n4\t0.27\t0.09\n9\t0.98\t0.93\n")
    assert main(["curves", str(out), "--reference", str(log)]) == 0
    printed = capsys.readouterr().out.replace("\\", "/")
    assert "model/curves.png" in printed and "updated the Training run section" in printed
    assert (out / "model" / "README.md").read_text().count("## Training run") == 1
    assert _png_width(out / "curves.png") > plain and _png_width(out / "model" / "curves.png") > plain
    log.write_text("epoch\tacc\tcertified\n4\t0.27\n")
    assert main(["curves", str(out), "--reference", str(log)]) == 2
    assert "test_inf.log:2: not 'epoch acc certified'" in capsys.readouterr().err
    log.write_text("epoch\tloss\n")
    assert main(["curves", str(out), "--reference", str(log)]) == 2
    assert "expected a header" in capsys.readouterr().err
    assert main(["curves", str(tmp_path)]) == 2
    assert "not a linfdist train run folder" in capsys.readouterr().err


def test_curves_of_a_fine_tuning_run_follow_the_run_it_started_from(shared_data, tmp_path, capsys):
    """`linfdist curves RUN --base BASE_RUN`: the card counts both runs' epochs and time, and reproduces
    both; a base the run did not start from is refused."""
    from linfdist.cli import main

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    train_and_certify(_smoke(), base, data_dir=shared_data, progress=False)
    train_and_certify(_smoke(epochs=1, lr=0.0005, init_from=str(base / "model")), tuned, data_dir=shared_data,
                      progress=False)
    plain = (tuned / "model" / "curves.png").read_bytes()
    assert main(["curves", str(tuned), "--base", str(base)]) == 0
    assert "updated the Reproduce section" in capsys.readouterr().out
    card = (tuned / "model" / "README.md").read_text()
    records = [json.loads(x) for r in (base, tuned) for x in (r / "metrics.jsonl").read_text().splitlines()]
    wall = round(sum(r["seconds"] for r in records))
    assert "| epochs | 3 (2, then 1 fine-tuning the weights they ended with) |" in card
    assert f"| wall time | {wall // 3600} h {wall % 3600 // 60:02d} min" in card and "started from" not in card
    reproduce = card.split("## Reproduce\n\n```\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert reproduce[0].startswith("linfdist train BASE_RUN --recipe mnist-smoke ") and len(reproduce) == 2
    assert reproduce[1].endswith("--set init_from=BASE_RUN/model") and "--set lr=0.0005" in reproduce[1]
    assert "--set lr=" not in reproduce[0] and card.count("## Reproduce") == card.count("## Training run") == 1
    assert (tuned / "model" / "curves.png").read_bytes() != plain
    assert main(["curves", str(base), "--base", str(tuned)]) == 2  # the base run started from random weights
    assert "started from 'random weights', not from" in capsys.readouterr().err
    assert main(["curves", str(tuned), "--base", str(tmp_path)]) == 2
    assert "not a linfdist train run folder" in capsys.readouterr().err


def test_the_reference_is_labelled_with_the_paper_recipes_net():
    from linfdist.cli import _reference_label

    assert _reference_label({"name": "mnist-0.3-cpu", "width": 512}) == "v2 authors (5×5120)"
    assert _reference_label({"name": "cifar10-2", "width": 1024}) == "v2 authors (6×5120)"
    for other in ("mnist-smoke", "cifar10-2-ft-cpu", "no-such-recipe"):
        assert _reference_label({"name": other}) == "v2 authors"


def test_checkpoints_from_another_architecture_or_garbage_are_refused(shared_data, tmp_path):
    out = tmp_path / "run"
    train(_smoke(epochs=1), out, data_dir=shared_data, progress=False)
    with pytest.raises(ValueError, match="different recipe or architecture.*width"):
        train(_smoke(epochs=1, width=48), out, data_dir=shared_data, progress=False, resume=True)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable linfdist checkpoint"):
        train(_smoke(epochs=1), out, data_dir=shared_data, progress=False, resume=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no CUDA device"):
        train(_smoke(), tmp_path / "run", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_run_resumes_on_the_cpu_and_certifies(shared_data, tmp_path):
    """Train on CUDA (Triton kernels under auto), stop mid-way, finish on the CPU: the
    model folder is written and certified, and each record names its device."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_smoke(), out, data_dir=shared_data, progress=False, stop=StopAfter(9), device="cuda")
    target = train_and_certify(_smoke(), out, data_dir=shared_data, progress=False, resume=True, device="cpu")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["device"] == device_name("cuda") and records[1]["device"] == device_name("cpu")
    assert "certified accuracy" in (target / "README.md").read_text()


def test_a_published_log_is_as_long_as_its_last_epoch_unless_told(tmp_path):
    from linfdist.curves import read_v2_test_log

    log = tmp_path / "test_inf.log"
    log.write_text("epoch\tacc\tcertified\n4\t0.27\t0.09\n1300\t0.54\t0.40\n")
    assert read_v2_test_log(log, "v2").epochs == 1300
    assert read_v2_test_log(log, "v2", 450).epochs == 450


def test_init_from_starts_the_run_at_a_checkpoints_weights(shared_data, tmp_path):
    first = train(_smoke(epochs=1), tmp_path / "first", data_dir=shared_data, progress=False)
    assert "independent verifier" not in (first / "README.md").read_text()  # the mixin's stub: certifying is the workflow's
    run = Run(_smoke(epochs=1, init_from=str(first)), tmp_path / "second" / "checkpoint.pt")
    start_from(run.model, first)
    source = load_pretrained(first)
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), source.state_dict().values()))
    assert not torch.equal(next(Run(_smoke(epochs=1), tmp_path / "c.pt").model.parameters()),
                           next(run.model.parameters()))  # a random init differs
    with pytest.raises(ValueError, match="differs from the recipe's in width"):
        start_from(Run(_smoke(width=48), tmp_path / "w.pt").model, first)
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        resolve_folder("no-such-model")
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        train(_smoke(init_from="default"), tmp_path / "third", data_dir=shared_data, progress=False)
    with pytest.raises(ValueError, match="differs from the recipe's in"):  # the zoo name resolved to its folder
        train_and_certify(_smoke(init_from="default"), tmp_path / "fourth", data_dir=shared_data, progress=False)
