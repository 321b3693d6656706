"""linfdist bench: the table, the JSON rows, the ratios, and bad options."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from linfdist.cli import main

spec = importlib.util.spec_from_file_location(
    "bench_lp_dist", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lp_dist.py")
bench = sys.modules.setdefault("bench_lp_dist", importlib.util.module_from_spec(spec))
spec.loader.exec_module(bench)


def test_bench_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--shapes", "tiny", "--p", "inf,8", "--passes", "fwd,bwd,bounds",
                 "--repeat", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vs cdist" in text and "64x96x80" in text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "linfdist.bench/1"
    rows = doc["rows"]
    cases = {(r["p"], r["pass"], r["backend"]) for r in rows}
    # cdist has no interval bounds; every other (p, pass) has torch (and native where built) and cdist rows
    from linfdist.kernels import native

    ours = ["torch"] + (["native"] if native.available() else [])
    assert cases == {(p, ps, b) for p in ("inf", 8.0) for ps in ("fwd", "bwd") for b in (*ours, "cdist")} | {
        (p, "bounds", b) for p in ("inf", 8.0) for b in ours}
    for r in rows:
        assert r["seconds"] > 0 and r["elements"] == 64 * 96 * 80
        if r["backend"] == "cdist":
            assert r["vs_cdist"] == 1.0
        if r["backend"] == "torch":
            assert r["vs_torch"] == 1.0
        if r["vs_cdist"] is not None:
            cdist = next(c for c in rows if (c["p"], c["pass"], c["backend"]) == (r["p"], r["pass"], "cdist"))
            assert r["vs_cdist"] == pytest.approx(cdist["seconds"] / r["seconds"])


def test_p_sweep_rows_carry_their_ratio_to_p_inf(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert main(["bench", "--device", "cpu", "--shapes", "tiny", "--p", "sweep", "--passes", "fwd,fwdbwd",
                 "--backends", "torch", "--repeat", "1", "--json", str(out)]) == 0
    assert "x p=inf" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["p"] for r in rows[:2]] == ["inf", "inf"]  # the reference runs first
    assert {r["p"] for r in rows} == {"inf" if p == float("inf") else p for p in bench.P_SWEEP}
    for r in rows:
        inf = next(c for c in rows if (c["p"], c["pass"]) == ("inf", r["pass"]))
        assert r["vs_inf"] == pytest.approx(r["seconds"] / inf["seconds"])


def test_bench_runs_triton_rows_under_the_interpreter(capsys):
    from linfdist.kernels.triton_common import interpreting

    if not interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 (set by conftest without a GPU)")
    rows = bench.run([(8, 12, 10)], [float("inf")], ["fwd", "bwd", "bounds"], ["triton", "torch"], "cpu", repeat=1)
    assert [(r.pass_, r.backend) for r in rows] == [(p, b) for p in ("fwd", "bwd", "bounds") for b in ("triton", "torch")]


def test_step_benchmark_counts_every_layer():
    fn, elements = bench.step_call("torch", float("inf"), width=16, batch=4, device="cpu")
    fn()
    assert elements == 4 * (784 * 16 + 3 * 16 * 16 + 16 * 10)  # depth 5: five ℓ∞-dist layers


def test_step_benchmark_builds_the_cifar_net():
    fn, elements = bench.step_call("torch", 8.0, width=16, batch=4, device="cpu", net="cifar10")
    fn()
    assert elements == 4 * (3072 * 16 + 4 * 16 * 16 + 16 * 10)
    assert set(bench.NETS) == {"mnist", "cifar10"}  # the CLI's --net choices list these


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "huge"], "unknown shape set"),
    (["--passes", "sideways"], "unknown pass"),
    (["--backends", "cuda-magic"], "unknown backend"),
    (["--p", "eight"], "--p must be"),
    (["--repeat", "0"], "--repeat must be"),
])
def test_bench_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["bench", "--device", "cpu", "--shapes", "tiny", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
