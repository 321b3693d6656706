"""Bad input to `linfdist verify` and `python -m linfdist.verify`: one line on stderr, status 2, no traceback."""

import gzip
import pickle
import shutil
import subprocess
import sys

import pytest

from linfdist.export import export_checkpoint
from linfdist.zoo import bundled_model_dir

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a good model, broken files and broken datasets (made from the bundled MNIST test set)."""
    from linfdist.data import bundled_dir

    d = tmp_path_factory.mktemp("bad")
    good = export_checkpoint(bundled_model_dir(), d / "good.onnx")
    shutil.copyfile(good, d / "UPPER.ONNX")
    (d / "truncated.onnx").write_bytes(good.read_bytes()[:1000])
    (d / "pickle.onnx").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    (d / "folder").mkdir()
    (d / "report.json").write_text('{"schema": "linfdist.verify/2"}')
    labels = bundled_dir() / "t10k-labels-idx1-ubyte.gz"
    images = bundled_dir() / "t10k-images-idx3-ubyte.gz"
    for name, image_bytes, label_bytes in (
        ("badgzip", b"not gzip", gzip.open(labels).read()),
        ("badheader", _patched(gzip.open(images).read(), 3, 9), gzip.open(labels).read()),
        ("badlabel", gzip.open(images).read(), _patched(gzip.open(labels).read(), 8 + 7, 42)),
    ):
        (d / name / "mnist").mkdir(parents=True)
        (d / name / "mnist" / images.name).write_bytes(image_bytes if name == "badgzip" else gzip.compress(image_bytes))
        (d / name / "mnist" / labels.name).write_bytes(gzip.compress(label_bytes))
    (d / "badnpz" / "cifar-10").mkdir(parents=True)
    (d / "badnpz" / "cifar-10" / "cifar10_test_uint8.npz").write_bytes(b"PK\x03\x04 not a zip")
    return d


def _patched(data: bytes, index: int, value: int) -> bytes:
    out = bytearray(data)
    out[index] = value
    return bytes(out)


CASES = [  # (argv after the model, model, message)
    ([], "truncated.onnx", "not a readable ONNX file"),
    ([], "pickle.onnx", "not a readable ONNX file"),
    ([], "missing.onnx", "not found"),
    ([], "folder", "not a linfdist checkpoint folder"),
    (["--data-dir", "badgzip"], "good.onnx", "expected a gzipped IDX file"),
    (["--data-dir", "badheader"], "good.onnx", "expected an IDX file with 3 dimension(s), got 9"),
    (["--data-dir", "badlabel"], "good.onnx", "label 42 at index 7 is outside 0..9"),
    (["--json", "folder"], "good.onnx", "--json folder: is a folder"),
    (["--json", "good.onnx"], "good.onnx", "refusing to overwrite"),
    (["--json", "no/such/folder/r.json"], "good.onnx", "does not exist"),
    (["--json", "/proc/r.json"], "good.onnx", "is not writable"),
    (["--vnnlib", "good.onnx"], "good.onnx", "exists and is not a folder"),
    (["--limit", "0"], "good.onnx", "--limit must be >= 1"),
    (["--eps", "-1"], "good.onnx", "--eps must lie in [0, 1]"),
    (["--runtimes", "ort-gpu"], "good.onnx", "unknown runtime"),
]


def _run(command, cwd):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("extra, model, message", CASES, ids=[f"{m}-{'-'.join(e)}" for e, m, _ in CASES])
@pytest.mark.parametrize("entry", ["linfdist", "python -m linfdist.verify"])
def test_bad_input_is_one_line_and_status_2(entry, extra, model, message, workdir):
    if entry != "linfdist" and model == "folder":
        message = "give an .onnx file"
    command = [sys.executable, "-m", *(["linfdist", "verify"] if entry == "linfdist" else ["linfdist.verify"])]
    limit = [] if "--limit" in extra else ["--limit", "5"]
    result = _run([*command, model, "--quiet", *limit, *extra], workdir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert (workdir / "good.onnx").read_bytes()[:4] != b'{"sc'  # nothing was overwritten


def test_threads_zero_is_a_usage_error(workdir):
    result = _run([sys.executable, "-m", "linfdist", "verify", "good.onnx", "--threads", "0"], workdir)
    assert result.returncode == 2 and "--threads must be >= 1" in result.stderr and "Traceback" not in result.stderr


def test_upper_case_onnx_suffix_and_an_earlier_report_are_fine(workdir):
    result = _run([sys.executable, "-m", "linfdist.verify", "UPPER.ONNX", "--limit", "5", "--quiet", "--runtimes",
                   "reference", "--json", "report.json"], workdir)
    assert result.returncode == 0, result.stderr
    assert '"schema": "linfdist.verify/2"' in (workdir / "report.json").read_text()


def test_output_piped_into_a_closed_reader_ends_quietly(workdir):
    """`| head -1`: the report table meets a closed pipe; no BrokenPipeError, and the JSON is written first."""
    script = ("import subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-m', 'linfdist.verify', 'good.onnx', '--limit', '5', '--quiet',"
              " '--runtimes', 'reference', '--json', 'piped.json'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
              "p.stdout.close()\n"
              "err = p.stderr.read().decode()\n"
              "print(p.wait(), repr(err))\n")
    result = _run([sys.executable, "-c", script], workdir)
    code, err = result.stdout.split(" ", 1)
    assert code in ("0", "141") and "Traceback" not in err and "BrokenPipe" not in err
    assert (workdir / "piped.json").is_file()


def test_an_onnx_runtime_error_is_that_runtimes_failure(tmp_path):
    """A model exported for batch 1 makes ORT refuse a batch of 5: its row says so, the others run."""
    fixed = export_checkpoint(bundled_model_dir(), tmp_path / "b1.onnx", batch=1)
    result = _run([sys.executable, "-m", "linfdist.verify", str(fixed), "--limit", "5", "--quiet",
                   "--runtimes", "reference,ort-cpu"], tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("ort-cpu"))
    assert "failed at sample 0" in row and "INVALID_ARGUMENT" in row


def test_an_unexpected_exception_is_one_line_naming_a_bug(workdir, monkeypatch, capsys):
    from linfdist.verify import cli

    def broken(*_):
        raise RuntimeError("something inside went wrong\nsecond line")

    monkeypatch.setattr(cli, "load_graph", broken)
    monkeypatch.delenv(cli.DEBUG_VAR, raising=False)
    assert cli.main([str(workdir / "good.onnx"), "--quiet"]) == cli.INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error, a bug in linfdist: RuntimeError: something inside" in err
    monkeypatch.setenv(cli.DEBUG_VAR, "1")
    with pytest.raises(RuntimeError):
        cli.main([str(workdir / "good.onnx"), "--quiet"])
