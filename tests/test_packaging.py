"""Package hygiene: light top-level import, torch-free verify, namespace mapping."""

import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_linfdist_does_not_import_torch():
    result = run_python("import sys, linfdist; print('torch' in sys.modules, linfdist.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"


def test_verify_and_data_import_with_torch_blocked():
    code = BLOCK_TORCH + "import linfdist.verify, linfdist.data; x, y = linfdist.data.load_dataset('mnist'); print(len(x))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "10000"


def test_blocking_torch_really_blocks_it():
    """Guards the test above: with torch blocked, anything needing torch fails."""
    result = run_python(BLOCK_TORCH + "import linfdist.models")
    assert result.returncode != 0 and "torch" in result.stderr


def test_folders_map_into_the_linfdist_namespace():
    import linfdist.export
    import linfdist.kernels
    import linfdist.verify
    import linfdist.zoo

    for module, folder in [(linfdist.kernels, "kernels"), (linfdist.export, "export"), (linfdist.verify, "verify"),
                           (linfdist.zoo, "zoo")]:
        assert module.__file__.replace("\\", "/").split("/")[-2] == folder


def test_lazy_submodules():
    import linfdist

    assert linfdist.functional.lp_dist is not None
    assert "models" in dir(linfdist)


def test_every_package_folder_and_data_file_is_in_the_distribution():
    """A wheel holds what pyproject lists: each folder with an __init__.py, and the recipe files."""
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[1]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: root / folder for package, folder in tool["package-dir"].items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            if package == "linfdist" and parts and parts[0] in {"kernels", "export", "verify", "zoo"}:
                continue
            found.add(".".join((package, *parts)))
    assert found == set(tool["packages"])
    assert "recipes/*.json" in tool["package-data"]["linfdist"]


def test_the_readme_api_example_runs():
    """The README's Python API block, as written, runs against the installed package."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "tensor(" in result.stdout
