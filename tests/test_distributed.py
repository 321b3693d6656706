"""Distributed training on the CPU (gloo): 2 ranks train the function 1 process trains on the same global
batches, resume across a change of world size, and write files only on rank 0."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from linfdist.distributed import World
from linfdist.recipe import get_recipe
from linfdist.train import CHECKPOINT, METRICS, StopRequest, train

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch was built without torch.distributed")

#: Float32 sums in another order (each shard's, then the all-reduce) than one process's: nine steps keep the
#: weights (scale 10) this close. Adam's ε is raised to 1e-4 in these runs: with the recipes' 1e-10 its first
#: step moves every weight by ±lr whatever its gradient's size, so gradients that cancel to rounding level
#: (the centred activations make some) come out as ±lr moves whose sign the rounding picks.
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-5


def _recipe(**changes):
    """A run of a few steps: 5 x 16 on 517 MNIST images (the last global batch of 5 splits 2 / 3), no PGD."""
    base = get_recipe("mnist-tiny")
    fields = dict(width=16, head_hidden=16, epochs=2, batch_size=64, train_limit=517, eval_limit=64, pgd_steps=0, adam_eps=1e-4,
                  p_warm_epochs=1, p_inf_epochs=0)
    return replace(base, **{**fields, **changes}).checked()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StopAt(StopRequest):
    """Asks to stop after ``steps`` training steps (on every rank: the same step)."""

    def __init__(self, steps: int):
        super().__init__()
        self.left = steps

    def is_set(self) -> bool:
        self.left -= 1
        return self.left <= 0


def _rank(rank, size, port, recipe, out, resume, stop_steps, data_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    world = World.from_env("cpu", "gloo")
    try:
        train(recipe, out, data_dir=data_dir, resume=resume, progress=False, world=world,
              stop=StopAt(stop_steps) if stop_steps is not None else None)
    except KeyboardInterrupt:
        pass
    finally:
        dist.destroy_process_group()


def _run(size, recipe, out, resume=False, stop_steps=None, data_dir=None):
    if size == 1:
        torch.set_num_threads(1)
        try:
            train(recipe, out, data_dir=data_dir, resume=resume, progress=False,
                  stop=StopAt(stop_steps) if stop_steps is not None else None)
        except KeyboardInterrupt:
            pass
        return
    mp.spawn(_rank, args=(size, _free_port(), recipe, out, resume, stop_steps, data_dir), nprocs=size, join=True)


def _weights(out: Path) -> dict:
    state = torch.load(out / CHECKPOINT, weights_only=True)
    return {**state["model"], "scale": state["scale"]}, state


def _assert_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, msg=name)


@pytest.mark.parametrize("stats", ["global", "per-rank"])
def test_two_ranks_train_what_one_process_trains(tmp_path, shared_data, stats):
    recipe = _recipe(epochs=1, mean_shift_stats=stats)
    _run(1, recipe, tmp_path / "one", data_dir=shared_data)
    _run(2, recipe, tmp_path / "two", data_dir=shared_data)
    one, one_state = _weights(tmp_path / "one")
    two, two_state = _weights(tmp_path / "two")
    if stats == "global":  # the same function: the same weights up to float32 reduction order
        _assert_close(one, two)
    else:  # each rank's batch statistics: another function (the authors' way), but one running mean
        assert not all(torch.allclose(one[k], two[k], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL) for k in one)
    assert one_state["epoch"] == two_state["epoch"] == 1
    assert torch.equal(one_state["rng"]["data"], two_state["rng"]["data"]), "the data order must not depend on ranks"
    logged = [json.loads((tmp_path / run / METRICS).read_text()) for run in ("one", "two")]
    if stats == "global":  # the epoch's tallies are over every rank's samples
        assert logged[0]["train_loss"] == pytest.approx(logged[1]["train_loss"], rel=1e-5)
        assert logged[0]["train_accuracy"] == logged[1]["train_accuracy"]
    assert (tmp_path / "two" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path, shared_data, first, then):
    recipe = _recipe()
    _run(1, recipe, tmp_path / "straight", data_dir=shared_data)
    _run(first, recipe, tmp_path / "split", stop_steps=3, data_dir=shared_data)  # stops mid-epoch, after step 3
    _, stopped = _weights(tmp_path / "split")
    assert (stopped["epoch"], stopped["step"]) == (0, 3)
    _run(then, recipe, tmp_path / "split", resume=True, data_dir=shared_data)
    _assert_close(_weights(tmp_path / "straight")[0], _weights(tmp_path / "split")[0])
    lines = (tmp_path / "split" / METRICS).read_text().splitlines()
    assert len(lines) == recipe.epochs, "every epoch is logged once, by rank 0"


def test_torchrun_trains_and_only_rank_0_reports(tmp_path, shared_data):
    """The command line under torchrun: gloo chosen for the CPU, one model folder, one report line."""
    out = tmp_path / "run"
    sets = ["--set", "width=16", "--set", "head_hidden=16", "--set", "epochs=1", "--set", "batch_size=64",
            "--set", "train_limit=256", "--set", "eval_limit=64", "--set", "pgd_steps=0", "--set", "p_inf_epochs=0",
            "--set", "p_warm_epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(_free_port()), "-m", "linfdist", "train", str(out), "--recipe", "mnist-tiny", *sets,
                           "--device", "cpu", "--quiet", "--threads", "1", "--data-dir", str(shared_data)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model written to") == 1, done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "metrics.jsonl", "model",
                                                     "recipe.json", "run.json"]


def test_shards_cover_a_global_batch_in_order():
    for size in (1, 2, 3, 8):
        for n in (1, 5, 64, 517):
            parts = [World(rank, size).shard(n) for rank in range(size)]
            assert [i for part in parts for i in range(n)[part]] == list(range(n))
            assert max(len(range(n)[p]) for p in parts) - min(len(range(n)[p]) for p in parts) <= 1


def test_a_wrong_backend_is_refused(monkeypatch):
    from linfdist.errors import LinfdistError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LinfdistError, match="nccl backend needs CUDA"):
        World.from_env("cpu", "nccl")
    with pytest.raises(LinfdistError, match="must be one of auto, gloo, nccl"):
        World.from_env("cpu", "mpi")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert World.from_env("cpu", "nccl") == World()  # one process: no process group, nothing to refuse


def _verify_args(tmp_path, name, extra=()):
    from linfdist.cli import build_parser

    return build_parser().parse_args(["verify", "mnist-5x256-eps0.1", "--limit", "230", "--batch-size", "64",
                                      "--quiet", "--eps", "0.05,0.1", "--json", str(tmp_path / f"{name}.json"),
                                      *extra])


def _report(path: Path) -> dict:
    """A report's JSON without its times (the one thing sharding changes)."""
    report = json.loads(path.read_text())
    report.pop("seconds"), report.pop("created")
    for row in report["runtimes"]:
        row.pop("seconds")
    return report


def test_a_sharded_verify_reports_what_one_run_reports(tmp_path, capsys):
    """Three shards run one after the other here, the gather handing rank 0 every part in rank order."""
    import linfdist.verify.cli as verify_cli
    from linfdist.cli import cmd_verify

    assert cmd_verify(_verify_args(tmp_path, "whole")) == 0
    capsys.readouterr()
    others = []

    def gather(part, rank):
        if rank:
            others.append(part)
            return None
        return [part, *others]

    original = verify_cli.run
    for rank in (1, 2, 0):
        def sharded(*a, rank=rank, **k):
            return original(*a, **{**k, "shard": (rank, 3), "gather": lambda part: gather(part, rank)})
        verify_cli.run = sharded
        try:
            assert cmd_verify(_verify_args(tmp_path, "sharded")) == 0
        finally:
            verify_cli.run = original
        assert (capsys.readouterr().out == "") == (rank != 0), "only rank 0 reports"
    assert _report(tmp_path / "sharded.json") == _report(tmp_path / "whole.json")


def test_torchrun_verify_equals_a_single_process_run(tmp_path):
    common = ["-m", "linfdist", "verify", "mnist-5x256-eps0.1", "--limit", "300", "--quiet", "--runtimes",
              "reference,torch-native,ort-cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, *common, "--json", str(tmp_path / "one.json")], capture_output=True,
                            text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          str(_free_port()), *common, "--json", str(tmp_path / "two.json")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("verifier: clean") == 1
    assert _report(tmp_path / "two.json") == _report(tmp_path / "one.json")


@pytest.mark.slow
def test_a_killed_rank_is_restarted_by_torchrun_and_the_run_resumes(tmp_path, shared_data):
    """torchrun --max-restarts 1: a rank killed mid-run takes the others down with the last checkpoint kept;
    the restarted command continues it, and every epoch is logged once."""
    import time

    out = tmp_path / "run"
    sets = ["--set", "width=16", "--set", "head_hidden=16", "--set", "epochs=4", "--set", "batch_size=32",
            "--set", "train_limit=3000", "--set", "eval_limit=32", "--set", "pgd_steps=0", "--set",
            "checkpoint_minutes=0.002"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                 "--max-restarts", "1", "--standalone", "-m", "linfdist", "train",
                                 str(out), "--recipe", "mnist-tiny", *sets, "--device", "cpu", "--quiet",
                                 "--threads", "1", "--data-dir", str(shared_data)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (out / METRICS).is_file() and time.monotonic() < deadline:  # epoch 1 done: kill during epoch 2
        time.sleep(0.2)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True,
                                                  text=True).stdout.split()]
    assert workers, "torchrun's workers not found"
    os.kill(max(workers), 9)
    logged_before_the_kill = len((out / METRICS).read_text().splitlines())
    assert logged_before_the_kill < 4, "the kill came too late to test a restart"
    stdout, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr[-3000:]  # a killed worker fails the launch unless torchrun restarted it
    epochs = [json.loads(line)["epoch"] for line in (out / METRICS).read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert stdout.count("model written to") == 1
