"""The benchmark scripts' own logic (their full runs need the authors' code or hours of CPU)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from linfdist.errors import LinfdistError
from linfdist.functional import interval_lp_dist, lp_dist
from linfdist.train import get_recipe

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("p", [8.0, math.inf])
def test_parity_shim_computes_their_layout_with_our_kernels(p):
    """Their distance functions take x as [B, C, L] and return [B, M, L]: y[b, m, l] = ‖x[b, :, l] − w[m]‖_p."""
    parity = _script("authors_parity")
    x, w = torch.randn(3, 5, 4), torch.randn(6, 5)
    y = parity._dist(x, w, p, 1)
    assert y.shape == (3, 6, 4) and y.is_contiguous()
    for l in range(4):
        torch.testing.assert_close(y[:, :, l], lp_dist(x[:, :, l].contiguous(), w, p))
    lo, hi = parity._bound(x - 0.1, x + 0.1, w, 1)
    ref_lo, ref_hi = interval_lp_dist((x - 0.1)[:, :, 2].contiguous(), (x + 0.1)[:, :, 2].contiguous(), w, math.inf)
    torch.testing.assert_close(lo[:, :, 2], ref_lo)
    torch.testing.assert_close(hi[:, :, 2], ref_hi)
    with pytest.raises(NotImplementedError):
        parity._dist(x, w, p, 2)


def test_parity_tasks_fill_their_commands():
    parity = _script("authors_parity")
    _, _, _, eps, their_args, recipe, _ = parity.TASKS["mnist-0.3"]
    filled = [parity._fill(a, {"{E}": "10", "{W}": "128", "{P}": "2", "{Q}": "8", "{S}": "1"}) for a in their_args]
    assert "0,0,2,8,10" in filled and "MLPModel(depth=5,width=128,identity_val=10.0,scalar=True)" in filled
    assert filled[filled.index("--seed") + 1] == "1" and get_recipe(recipe).eps_test == eps == 0.3


def test_epochs_scale_the_schedule_shape():
    """`linfdist train --epochs N` (and so the sweep) keeps every phase in proportion."""
    r = get_recipe("fmnist-0.1-cpu").with_epochs(20)
    assert (r.epochs, r.p_warm_epochs, r.p_inf_epochs, r.lr_hold_epochs) == (20, 2, 2, 2.0)  # v1 holds the rate while p = 8
    r = get_recipe("mnist-0.3-cpu").with_epochs(10)
    assert (r.p_warm_epochs, r.p_inf_epochs, r.lr_hold_epochs) == (1, 1, 0.0)  # v2 holds nothing


def test_paper_size_nets_have_the_papers_shape_and_task(tmp_path):
    from linfdist.models import load_pretrained

    paper = _script("paper_size")
    for net, depth, shape, eps in (("mnist", 5, [1, 28, 28], 0.3), ("cifar10", 6, [3, 32, 32], 8 / 255)):
        model = load_pretrained(paper.build(net, tmp_path / net, width=16))
        assert (model.config.depth, model.config.input_shape, model.config.eps) == (depth, shape, eps)
        assert model.config.dataset == net and model.config.width == 16


def test_skip_fractions_count_the_terms_within_2_to_the_minus_40():
    rows = _script("skip_fractions").main(["--model", "mnist-5x256-eps0.1", "--images", "4", "--p", "8,1000"])
    hidden = [r for r in rows if r["out"] == 256]
    assert len(hidden) == 2 * 4 and all(0 < r["terms"] <= r["groups_of_16"] <= 1 for r in hidden)
    by_layer = {(r["layer"], r["p"]): r["terms"] for r in rows}
    assert all(by_layer[(layer, 1000.0)] < by_layer[(layer, 8.0)] for layer, _ in by_layer)


def test_gpu_runs_take_the_epochs_their_probe_says_fit():
    """benchmarks/gpu_train.sh sizes a device call's schedule from a probe: the compile epoch left out, the
    evaluation (in the log's clock, not in an epoch's seconds) counted, never more than the recipe's epochs."""
    fit = _script("epochs_that_fit")
    probe = [{"seconds": 30.0, "finished": "2026-12-02T00:00:30Z"},  # compiles
             {"seconds": 2.0, "finished": "2026-12-02T00:00:33Z"},
             {"seconds": 2.5, "finished": "2026-12-02T00:00:36Z"},
             {"seconds": 2.0, "finished": "2026-12-02T00:00:39Z"}]
    assert fit.epoch_seconds(probe) == pytest.approx(3.5)  # (39 - 33 + 1) / 2: evaluations take about 1 s
    assert fit.epochs_that_fit(probe, 450, 350) == 90
    assert fit.epochs_that_fit(probe, 40, 350) == 40
    quiet = [dict(r, finished="2026-12-02T00:00:30Z") for r in probe]  # within one second of the log's clock
    assert fit.epoch_seconds(quiet) == 2.5
    with pytest.raises(ValueError, match="3 epochs"):
        fit.epoch_seconds(probe[:2])


def test_epoch_time_times_the_recipe_with_its_overrides(shared_data, tmp_path, capsys):
    """benchmarks/epoch_time.py applies --set like `linfdist train` and writes one row per p."""
    out = tmp_path / "times.json"
    assert _script("epoch_time").main(["--recipe", "mnist-tiny", "--set", "width=16", "--set", "head_hidden=16",
                                       "--p", "8,inf", "--steps", "1", "--data-dir", str(shared_data),
                                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows["set"] == ["width=16", "head_hidden=16"]
    assert [r["p"] for r in rows["rows"]] == [8.0, "inf"]
    assert all(r["epoch_seconds"] > 0 for r in rows["rows"])
    with pytest.raises(LinfdistError, match="unknown recipe field 'widht'"):
        _script("epoch_time").main(["--recipe", "mnist-tiny", "--set", "widht=16", "--data-dir", str(shared_data)])


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("how", ["SIGTERM to the sweep", "Ctrl-C"])
def test_a_stopped_sweep_stops_its_training_and_waits_for_its_checkpoint(tmp_path, how, jobs):
    """SIGTERM to the sweep reaches every running step as SIGINT (what makes `linfdist train` checkpoint and
    stop; Ctrl-C reaches the whole process group), the sweep starts no further step, and it exits only after
    the running ones have: none is left running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    step = ("import pathlib, signal, sys, time\n"
            f"def stop(*_):\n    time.sleep(0.5); pathlib.Path({str(tmp_path)!r}, 'saved{{W}}').write_text('checkpoint')"
            "; sys.exit(130)\n"
            f"signal.signal(signal.SIGINT, stop); pathlib.Path({str(tmp_path)!r}, 'ready{{W}}')"
            ".write_text(str(__import__('os').getpid()))\n"
            "time.sleep(60)\n")
    run = ("import sys, sweep\n"
           "sweep.run_one = lambda args, w, e, threads=None: sweep._run([sys.executable, '-c', "
           "sys.argv[1].replace('{W}', str(w))])\n"
           f"sweep._stoppable(lambda: sweep.run_all(None, [(1, 1), (2, 1), (3, 1)], {jobs}, lambda rows: None))")
    sweep = subprocess.Popen([sys.executable, "-c", run, step], cwd=BENCHMARKS, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    running = [tmp_path / f"ready{w}" for w in range(1, jobs + 1)]
    deadline = time.monotonic() + 30
    while not all(r.is_file() for r in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    if how == "Ctrl-C":
        os.killpg(sweep.pid, signal.SIGINT)
    else:
        sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=30)
    expected = (130, "stopped") if how == "Ctrl-C" else (1, "exited with status 130")
    assert sweep.returncode == expected[0] and expected[1] in err and "the same sweep command resumes" in err
    assert [(tmp_path / f"saved{w}").read_text() for w in range(1, jobs + 1)] == ["checkpoint"] * jobs
    assert not (tmp_path / "ready3").exists()
    for ready in running:
        with pytest.raises(ProcessLookupError):
            os.kill(int(ready.read_text()), 0)


def test_a_parallel_sweep_gives_every_configuration_its_share_of_the_cores(shared_data, tmp_path):
    """--jobs 2: both configurations train at once, each with half the cores' threads, and the rows come back
    in the order asked for."""
    sweep = _script("sweep")
    out = tmp_path / "sweep"
    assert sweep.main(["--recipe", "mnist-smoke", "--widths", "16,8", "--epochs", "1", "--jobs", "2",
                       "--data-dir", str(shared_data), "--out", str(out)]) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [(r["width"], r["epochs"]) for r in rows] == [(16, 1), (8, 1)]
    threads = max(1, sweep._cores() // 2)
    assert all(f"{threads} torch threads" in r["device"] and r["n"] == 10000 for r in rows)


def test_a_failed_configuration_leaves_the_others_running(monkeypatch):
    """A parallel sweep reports a configuration's failure after the rest have ended, with their rows kept."""
    sweep = _script("sweep")
    seen = []

    def run_one(args, width, epochs, threads=None):
        if width == 2:
            raise SystemExit("sweep: width 2 failed")
        return {"width": width, "epochs": epochs}

    monkeypatch.setattr(sweep, "run_one", run_one)
    with pytest.raises(SystemExit, match="width 2 failed"):
        sweep.run_all(None, [(1, 5), (2, 5), (3, 5)], 2, lambda rows: seen.append([r["width"] for r in rows]))
    assert seen[-1] == [1, 3]
