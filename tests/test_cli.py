"""The linfdist command line: verify, train, placeholders, and one-line errors."""

import json
import os
import subprocess
import sys

import pytest
import torch

from linfdist.cli import main
from linfdist.models import LinfDistNet, LinfDistNetConfig


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = LinfDistNet(LinfDistNetConfig(depth=2, width=16, eps=0.05, mean=[0.1307], std=[0.3081]))
    net.eval()
    folder = tmp_path / "ckpt"
    net.save_pretrained(folder)
    return folder


def test_verify_checkpoint_prints_table_and_json(checkpoint, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["verify", str(checkpoint), "--limit", "50", "--eps", "0.01", "--json", str(report), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "certified" in out and "torch-cpu" in out and "0.01" in out and "exported to ONNX" in out
    data = json.loads(report.read_text())
    assert data["schema"] == "linfdist.verify/2"
    assert data["n"] == 50 and data["eps"] == 0.01 and data["dataset"] == "mnist"
    for key in ("clean_accuracy", "certified_accuracy", "margin_accuracy", "ibp_accuracy"):
        assert 0 <= data[key] <= 100
    assert data["certified_accuracy"] <= data["clean_accuracy"]
    rows = {r["name"]: r for r in data["runtimes"]}
    assert set(rows) == {"reference", "torch-cpu", "torch-native", "torch-triton", "ort-cpu", "ort-cuda"}
    assert rows["torch-cpu"]["clean_accuracy"] == data["clean_accuracy"]


def test_verify_default_model_is_the_bundled_one(capsys):
    assert main(["verify", "--limit", "100", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "zoo/mnist-5x512-eps0.1" in out.replace("\\", "/") and "n = 100," in out


def test_entry_point_runs_as_a_module(checkpoint):
    result = subprocess.run(
        [sys.executable, "-m", "linfdist", "verify", str(checkpoint), "--limit", "20", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout


@pytest.mark.parametrize(
    "argv,message",
    [
        (["verify", "no/such/folder"], "no/such/folder: no such file or folder, and not a zoo model"),
        (["verify", "model.onnx"], "model.onnx not found"),
        (["verify", "--runtimes", "tensorflow"], "unknown runtime(s) tensorflow"),
        (["verify", "--eps", "-1", "--limit", "5"], "--eps must lie in [0, 1]"),
        (["verify", "--eps", "inf", "--limit", "5"], "--eps must lie in [0, 1]"),
        (["verify", "--limit", "0"], "--limit must be >= 1"),
        (["verify", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["verify", "--dataset", "cifar10"], "trained on mnist, not cifar10"),
        (["verify", "--dataset", "cifar10", "--force-dataset"], "cifar10 is not bundled"),
        (["train", "--recipe", "imagenet-huge"], "unknown recipe"),
        (["train", "--recipe", "mnist-smoke", "--set", "widht=3"], "unknown recipe field 'widht'"),
        (["train", "--recipe", "mnist-smoke", "--set", "oops"], "field=value"),
        (["train", "--recipe", "mnist-smoke", "--set", "loss=v9"], "unknown loss"),
        (["train", "--recipe", "mnist-smoke", "--width", "0"], "width must be >= 1"),
        (["train", "--recipe", "mnist-smoke", "--data-dir", "no/such/dir"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_zoo_list_info_download(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    from linfdist.zoo.registry import get_entry

    for name, status in (("mnist-5x512-eps0.1", "bundled (default)"), ("mnist-5x256-eps0.1", "bundled")):
        assert f"{get_entry(name).certified_accuracy:.2f}%" in rows[name] and rows[name].endswith(status)
    assert main(["zoo", "info", "default"]) == 0
    assert "library_name: linfdist" in capsys.readouterr().out
    assert main(["zoo", "download", "mnist-5x256-eps0.1"]) == 0
    assert "4 files checked" in capsys.readouterr().out
    assert main(["zoo", "download", "default"]) == 0
    assert "mnist-5x512-eps0.1: 4 files checked" in capsys.readouterr().out
    assert main(["zoo", "info", "mnist-5x265"]) == 2
    assert "did you mean mnist-5x256-eps0.1" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "verify" in capsys.readouterr().out


def test_list_recipes(capsys):
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-0.1", "mnist-0.3", "fmnist-0.1", "cifar10-2", "cifar10-8", "mnist-tiny", "mnist-default"):
        assert f"{name}:" in out


def test_width_option_scales_the_recipe(shared_data, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "mnist-smoke", "--data-dir", str(shared_data), "--out", str(out), "--quiet",
            "--width", "24", "--epochs", "1", "--set", "pgd_steps=0"]
    assert main(argv) == 0
    assert json.loads((out / "recipe.json").read_text())["width"] == 24
    assert json.loads((out / "model" / "config.json").read_text())["width"] == 24


def test_train_tiny_recipe_end_to_end_then_verify(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--recipe", "mnist-smoke", "--data-dir", str(shared_data), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[-1]["p"] == "inf"
    card = (out / "model" / "README.md").read_text()
    assert "library_name: linfdist" in card and "certified_accuracy" in card
    # Re-running into the same folder without --resume is refused; --resume of a finished run is a no-op.
    assert main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["verify", str(out / "model"), "--limit", "100", "--quiet"]) == 0


def test_resume_with_a_changed_recipe_is_refused(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--recipe", "mnist-smoke", "--data-dir", str(shared_data), "--out", str(out), "--quiet"]
    assert main(base + ["--epochs", "1"]) == 0
    assert main(base + ["--epochs", "2", "--set", "lr=0.5", "--resume"]) == 2
    assert "different recipe" in capsys.readouterr().err


def test_the_cli_lets_openmp_workers_sleep_where_the_native_kernels_are_built():
    """Running a command (not importing the CLI) sets OMP_WAIT_POLICY=PASSIVE where the native kernels are
    built; a policy the user set wins."""
    from linfdist.kernels import native

    code = ("import os, linfdist.cli as cli; imported = os.environ.get('OMP_WAIT_POLICY'); "
            "cli.main(['zoo', 'list']); print(imported, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "None " + ("PASSIVE" if native.available() else "None")
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "ACTIVE ACTIVE"


def test_a_run_resumes_from_its_folder_alone(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(out), "--recipe", "mnist-smoke", "--data-dir", str(shared_data), "--epochs", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "certified" in printed and "independent verifier, 10000 test images" in printed
    assert json.loads((out / "run.json").read_text())["data_dir"] == str(shared_data.resolve())
    assert main(["train", str(out), "--resume", "--quiet"]) == 0  # recipe and data folder from the run folder
    assert main(["train"]) == 2
    assert "--recipe NAME is required" in capsys.readouterr().err
    assert main(["train", "--resume"]) == 2
    assert "needs the run folder" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("lr=-1", "lr must be > 0"), ("epochs=2.5", "epochs must be an integer"), ("flip=1", "true or false"),
    ("adam_betas=[0.9]", "a pair of numbers"), ("p_start=0.5", "p_start must be >= 1"),
    ("eps_test=-0.1", "eps_test must be >= 0"), ("backend=cuda", "backend must be one of"),
    ("lr_fnial=0.1", "did you mean lr_final"), ("hinge_mix=2", "hinge_mix must lie in [0, 1]"),
])
def test_recipe_settings_are_checked_before_any_work(setting, message, tmp_path, capsys):
    assert main(["train", "--recipe", "mnist-smoke", "--out", str(tmp_path / "r"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_unknown_recipes_suggest_close_ones(capsys):
    assert main(["train", "--recipe", "mnist-0.3cpu"]) == 2
    assert "did you mean mnist-0.3-cpu" in capsys.readouterr().err


def test_written_files_get_the_umask_mode(shared_data, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["train", str(tmp_path / "run"), "--recipe", "mnist-smoke", "--data-dir", str(shared_data),
                     "--epochs", "1", "--quiet"]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o640, path


def test_ctrl_c_before_the_first_step_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch):
    """An interrupt while the run starts (data loading, torch.compile's first compilation): status 130, one line."""
    import linfdist.train as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert main(["train", str(tmp_path / "run"), "--recipe", "mnist-smoke"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "before the first step" in err
