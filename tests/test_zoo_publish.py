"""linfdist zoo publish: dry-run staging and the exact Hub calls, against a test double of HfApi.

There is no Hub here: the double records calls and returns a commit id, which publish
must pin in the registry.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from linfdist.cli import main
from linfdist.files import sha256_file
from linfdist.zoo import registry
from linfdist.zoo.publish import publish

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"  # the double's commit id


class FakeHfApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        staged = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", staged, kwargs))
        return SimpleNamespace(oid=COMMIT)


class RefusingApi:
    def __getattr__(self, name):
        raise AssertionError(f"dry-run called HfApi.{name}")


@pytest.fixture
def setup(tmp_path):
    folder = tmp_path / "mnist-small"
    shutil.copytree(registry.model_folder("mnist-5x256-eps0.1"), folder)
    reg = tmp_path / "registry.json"
    shutil.copy(registry.registry_path(), reg)
    return folder, reg


def test_dry_run_stages_and_calls_nothing(setup):
    folder, reg = setup
    before = reg.read_text()
    plan = publish(folder, "someone/mnist-small", "mnist-small", dry_run=True, api=RefusingApi(), registry=reg)
    assert plan["revision"] is None and sorted(plan["files"]) == ["README.md", "config.json", "curves.png", "model.safetensors"]
    assert plan["files"]["model.safetensors"] == sha256_file(folder / "model.safetensors")
    assert reg.read_text() == before


def test_publish_makes_the_exact_calls_and_pins_the_commit(setup):
    folder, reg = setup
    api = FakeHfApi()
    publish(folder, "someone/mnist-small", "mnist-small", api=api, registry=reg)
    (create, upload) = api.calls
    assert create == ("create_repo", "someone/mnist-small", {"repo_type": "model", "exist_ok": True})
    assert upload[1] == ["README.md", "config.json", "curves.png", "model.safetensors"]
    assert upload[2]["repo_id"] == "someone/mnist-small" and upload[2]["revision"] == "main"
    assert upload[2]["commit_message"] == "Upload mnist-small (linfdist 0.1.0)"
    entry = next(e for e in registry.load_registry(reg) if e.name == "mnist-small")
    assert (entry.revision, entry.repo_id, entry.bundled) == (COMMIT, "someone/mnist-small", None)
    assert entry.files == {n: sha256_file(folder / n) for n in entry.files}
    assert (entry.certified_accuracy, entry.dataset, entry.eps) == (95.77, "mnist", 0.1)  # the card's claim
    # publishing again replaces the entry instead of duplicating it
    publish(folder, "someone/mnist-small", "mnist-small", api=FakeHfApi(), registry=reg)
    assert [e.name for e in registry.load_registry(reg)].count("mnist-small") == 1


def test_the_curves_the_card_shows_are_uploaded(tmp_path):
    folder = shutil.copytree(registry.model_folder("default"), tmp_path / "m")
    plan = publish(folder, "someone/m", "m", dry_run=True, api=RefusingApi(), registry=tmp_path / "none.json")
    assert "![training curves](curves.png)" in (folder / "README.md").read_text()
    assert plan["files"]["curves.png"] == sha256_file(folder / "curves.png")


def test_sharded_folders_upload_every_shard_and_the_index(tmp_path, monkeypatch):
    from linfdist import models
    from linfdist.zoo.card import write_model_card

    monkeypatch.setattr(models, "SHARD_BYTES", 4000)
    net = models.LinfDistNet(models.LinfDistNetConfig(input_shape=[1, 4, 4], depth=4, width=24))
    net.save_pretrained(tmp_path / "m")
    write_model_card(tmp_path / "m", net.config, {"eps": 0.1, "n": 10, "clean_accuracy": 50.0,
                                                   "certified_accuracy": 10.0, "certified_accuracy_margin": 10.0,
                                                   "certified_accuracy_ibp": 10.0, "certifier": "test figures"})
    plan = publish(tmp_path / "m", "someone/m", "m", dry_run=True)
    shards = [f for f in plan["files"] if f.startswith("model-")]
    assert len(shards) >= 2 and "model.safetensors.index.json" in plan["files"]


def test_bad_publish_input(setup, capsys):
    folder, reg = setup
    with pytest.raises(ValueError, match="owner/name"):
        publish(folder, "no-slash", "x", dry_run=True)
    (folder / "README.md").unlink()
    assert main(["zoo", "publish", str(folder), "--repo-id", "a/b", "--dry-run"]) == 2
    assert "needs the model card" in capsys.readouterr().err


def test_cli_dry_run(setup, capsys):
    folder, reg = setup
    assert main(["zoo", "publish", str(folder), "--repo-id", "a/b", "--dry-run", "--registry", str(reg)]) == 0
    out = capsys.readouterr().out
    assert "would upload to a/b" in out and "model.safetensors  sha256" in out


def test_publishing_a_bundled_model_keeps_its_copy_and_aliases(tmp_path):
    reg = tmp_path / "registry.json"
    shutil.copy(registry.registry_path(), reg)
    default = registry.get_entry("default")
    publish(registry.model_folder("default"), "someone/d", default.name, api=FakeHfApi(), registry=reg)
    entry = next(e for e in registry.load_registry(reg) if e.name == default.name)
    assert (entry.revision, entry.bundled, entry.aliases, entry.files) == (
        COMMIT, default.bundled, default.aliases, default.files)


def test_publishing_other_files_under_a_bundled_name_is_refused(setup):
    folder, reg = setup  # the 5x256 model's files
    with pytest.raises(ValueError, match="bundled with different files"):
        publish(folder, "someone/d", registry.get_entry("default").name, dry_run=True, registry=reg)
