"""Bad input anywhere: one line on stderr, exit status 2, never a traceback, and nothing done first.

Each case is a command line (with {placeholders} for files the fixture makes) and a phrase the one line
must contain.
"""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from linfdist.cli import main

CASES = [
    # verify
    ("verify --threads 0", "--threads must be >= 1"),
    ("verify --limit 0", "--limit must be >= 1"),
    ("verify --limit 20000", "exceeds the 10000 images"),
    ("verify --batch-size 0", "--batch-size must be >= 1"),
    ("verify --eps 2", "--eps must lie in [0, 1]"),
    ("verify --eps -0.1", "--eps must lie in [0, 1]"),
    ("verify --eps abc", "is not a number or fraction"),
    ("verify --eps 1/0", "is not a number or fraction"),
    ("verify --runtimes torch-triton", "cannot run here"),
    ("verify --runtimes bogus", "unknown runtime"),
    ("verify --dataset fashion-mnist", "trained on mnist, not fashion-mnist"),
    ("verify --dataset svhn", "invalid choice"),
    ("verify {png}", "is not an ONNX file"),
    ("verify {tmp}/missing.onnx", "not found"),
    ("verify {tmp}/no/such/folder", "no such file or folder"),
    ("verify {empty}", "not a linfdist checkpoint folder"),
    ("verify {garbage_onnx}", "not"),
    ("verify mnist-5x512-eps03", "did you mean mnist-5x512-eps0.3"),
    ("verify --json {tmp}/nowhere/r.json", "does not exist"),
    ("verify --json {empty}", "is a folder"),
    ("verify --json {png}", "refusing to overwrite"),
    ("verify --data-dir {tmp}/nodata", "does not exist"),
    ("verify --plot {tmp}/curve.txt", "--plot must name a .png"),
    ("verify --bogus", "unrecognized arguments"),
    # certify
    ("certify {tmp}/missing.png", "not found"),
    ("certify {txt}", "not an image or array file"),
    ("certify {u8}", "integer pixels"),
    ("certify {big}", "pass --resize"),
    ("certify {png} --model nosuch-model", "unknown model"),
    ("certify {png} --model {png}", "is not an ONNX file"),
    ("certify {png} --json {tmp}/nowhere/c.json", "does not exist"),
    ("certify {png} --eps -1", "--eps must be >= 0"),
    # train
    ("train", "--recipe NAME is required"),
    ("train --recipe nosuch", "unknown recipe"),
    ("train --recipe mnist-smok", "did you mean mnist-smoke"),
    ("train --recipe mnist-smoke --set lr=-1", "lr must be > 0"),
    ("train --recipe mnist-smoke --set bogus=1", "unknown recipe field"),
    ("train --recipe mnist-smoke --set width", "is not of the form field=value"),
    ("train --recipe mnist-smoke --epochs 0", "--epochs must be >= 1"),
    ("train --recipe mnist-smoke --threads 0", "--threads must be >= 1"),
    ("train --resume", "needs the run folder"),
    ("train {empty} --resume", "not a linfdist train run folder"),
    ("train --recipe mnist-smoke --out /proc/linfdist-run", "cannot write there"),
    ("train --recipe mnist-smoke --device tpu", "invalid choice"),
    # export
    ("export -o {tmp}/m.txt", "--output must end in .onnx"),
    ("export -o {tmp}/nowhere/m.onnx", "does not exist"),
    ("export -o {tmp}/m.onnx --opset 9", "opset 9 is not supported"),
    ("export -o {tmp}/m.onnx --batch 0", "batch must be >= 1"),
    ("export -o {tmp}/m.onnx --batch many", "--batch must be"),
    ("export {garbage_onnx} -o {tmp}/m.onnx", "is an ONNX file"),
    ("export nosuch-model -o {tmp}/m.onnx", "unknown model"),
    ("export {empty} -o {tmp}/m.onnx", "not a linfdist checkpoint folder"),
    # zoo
    ("zoo", "choose an action"),
    ("zoo info nosuch", "unknown model"),
    ("zoo download nosuch", "unknown model"),
    ("zoo list --dataset svhn", "invalid choice"),
    ("zoo list --eps x", "is not a number"),
    ("zoo convert {tmp}/missing.pth --dataset mnist --eps 0.3 -o {tmp}/out", "not found"),
    ("zoo convert {garbage_pth} --dataset mnist --eps 0.3 -o {tmp}/out", "not a tensors-only PyTorch checkpoint"),
    ("zoo convert {garbage_pth} --dataset svhn --eps 0.3 -o {tmp}/out", "invalid choice"),
    ("zoo bundle {empty} --name x", "not a linfdist checkpoint folder"),
    ("zoo recertify nosuch", "unknown model"),
    # curves
    ("curves {empty}", "not a linfdist train run folder"),
    ("curves {run} --reference {binary}", "not a text file"),
    ("curves {run} --reference {tmp}/missing.log", "No such file"),
    # bench and the command itself
    ("bench --repeat 0", "--repeat must be >= 1"),
    ("bench --shapes huge", "unknown shape set"),
    ("bench --p eight", "--p must be comma-separated numbers"),
    ("nosuch", "invalid choice"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "empty").mkdir()
    Image.new("L", (28, 28)).save(tmp / "digit.png")
    Image.new("L", (40, 40)).save(tmp / "big.png")
    np.save(tmp / "u8.npy", np.zeros((1, 28, 28), np.uint8))
    (tmp / "notes.txt").write_text("hello")
    (tmp / "garbage.onnx").write_bytes(b"\x00garbage")
    (tmp / "garbage.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    (tmp / "binary.log").write_bytes(bytes(range(256)))
    run = tmp / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "recipe.json").write_text('{"epochs": 1}\n')
    return {"tmp": tmp, "empty": tmp / "empty", "png": tmp / "digit.png", "big": tmp / "big.png",
            "u8": tmp / "u8.npy", "txt": tmp / "notes.txt", "garbage_onnx": tmp / "garbage.onnx",
            "garbage_pth": tmp / "garbage.pth", "binary": tmp / "binary.log", "run": run}


def test_there_are_enough_cases():
    assert len(CASES) >= 40 and {c.split()[0] for c, _ in CASES} >= {"verify", "certify", "train", "export", "zoo",
                                                                        "curves", "bench"}


@pytest.mark.parametrize("command, phrase", CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_status_2(command, phrase, files, capsys):
    argv = [part.format(**files) for part in command.split()]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    assert status == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert phrase in captured.err and "Traceback" not in captured.err
    assert "weights_only=False" not in captured.err


def test_output_piped_into_head_is_not_an_error():
    run = subprocess.run(f"{sys.executable} -m linfdist zoo list | head -1", shell=True, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("name") and "Traceback" not in run.stderr
