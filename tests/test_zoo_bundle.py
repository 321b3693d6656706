"""linfdist zoo bundle: a certified checkpoint folder becomes a bundled, registered model."""

import dataclasses
import json
import shutil

import pytest

from linfdist.files import sha256_file
from linfdist.zoo import registry
from linfdist.zoo.bundle import bundle


@pytest.fixture
def zoo(tmp_path):
    """A copy of the package's registry and a folder to bundle into."""
    reg = tmp_path / "registry.json"
    shutil.copy(registry.registry_path(), reg)
    return tmp_path / "zoo", reg


def test_bundle_copies_registers_and_moves_the_default(zoo, tmp_path):
    zoo_dir, reg = zoo
    source = registry.model_folder("default")
    entry = bundle(source, "mnist-copy", make_default=True, zoo_dir=zoo_dir, registry=reg)
    assert sorted(p.name for p in (zoo_dir / "mnist-copy").iterdir()) == sorted(entry.files)
    assert entry.files == {f: sha256_file(source / f) for f in entry.files} and "curves.png" in entry.files
    assert registry.check_files(zoo_dir / "mnist-copy", entry)
    entries = {e.name: e for e in registry.load_registry(reg)}
    assert entries["mnist-copy"].aliases == ["default"] and entries["mnist-copy"].bundled == "mnist-copy"
    assert all("default" not in e.aliases for n, e in entries.items() if n != "mnist-copy")
    original = registry.get_entry("default")
    assert (entry.clean_accuracy, entry.certified_accuracy, entry.certifier) == (
        original.clean_accuracy, original.certified_accuracy, original.certifier)
    assert entry.revision is None and entry.repo_id == "linfdist/mnist-copy"


def test_bundle_refuses_taken_names_and_folders_without_a_card(zoo, tmp_path):
    zoo_dir, reg = zoo
    with pytest.raises(ValueError, match="already registered"):
        bundle(registry.model_folder("default"), "default", zoo_dir=zoo_dir, registry=reg)
    bare = shutil.copytree(registry.model_folder("default"), tmp_path / "bare")
    (bare / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="model card"):
        bundle(bare, "bare", zoo_dir=zoo_dir, registry=reg)
    assert not (zoo_dir / "bare").exists()
    assert json.loads(reg.read_text()) == json.loads(registry.registry_path().read_text())


def test_registry_writes_refuse_alias_clashes_and_keep_one_default(zoo):
    _, reg = zoo
    entries = registry.load_registry(reg)
    with pytest.raises(ValueError, match="already used by"):
        registry.record_entry(reg, dataclasses.replace(entries[1], name="new", aliases=["default"]))
    registry.record_entry(reg, entries[1], make_default=True)
    registry.record_entry(reg, entries[1], make_default=True)
    after = registry.load_registry(reg)
    assert [e.name for e in after] == [e.name for e in entries]
    assert [e.name for e in after if "default" in e.aliases] == [entries[1].name]
    assert after[1].aliases.count("default") == 1


def test_a_copy_stopped_halfway_leaves_no_bundled_folder(zoo, monkeypatch):
    zoo_dir, reg = zoo
    copied, real_copy = [], shutil.copyfile

    def copy_then_stop(src, dst):
        if copied:
            raise KeyboardInterrupt
        copied.append(real_copy(src, dst))

    monkeypatch.setattr(shutil, "copyfile", copy_then_stop)
    with pytest.raises(KeyboardInterrupt):
        bundle(registry.model_folder("default"), "cut", zoo_dir=zoo_dir, registry=reg)
    monkeypatch.undo()
    assert not (zoo_dir / "cut").exists()
    entry = bundle(registry.model_folder("default"), "cut", zoo_dir=zoo_dir, registry=reg)
    assert sorted(p.name for p in zoo_dir.iterdir()) == ["cut"] and registry.check_files(zoo_dir / "cut", entry)


def bundled_copy(zoo_dir, name):
    """Put the package's bundled ``name`` into the test zoo folder, as the test registry expects."""
    return shutil.copytree(registry.model_folder(name), zoo_dir / name)


def test_a_better_model_takes_the_place_aliases_and_folder_of_the_one_it_replaces(zoo):
    zoo_dir, reg = zoo
    bundled_copy(zoo_dir, "mnist-5x256-eps0.1")
    registry.record_entry(reg, registry.get_entry("mnist-5x256-eps0.1", reg), make_default=True)
    before = [e.name for e in registry.load_registry(reg)]
    better = registry.model_folder("mnist-5x512-eps0.1")
    entry = bundle(better, "mnist-best", zoo_dir=zoo_dir, registry=reg, replaces="mnist-5x256-eps0.1")
    after = registry.load_registry(reg)
    assert [e.name for e in after] == [n if n != "mnist-5x256-eps0.1" else "mnist-best" for n in before]
    assert registry.get_entry("default", reg).name == "mnist-best" and entry.certified_accuracy > 95.77
    assert sorted(p.name for p in zoo_dir.iterdir()) == ["mnist-best"]
    assert registry.check_files(zoo_dir / "mnist-best", registry.get_entry("mnist-best", reg))


def test_a_model_can_replace_its_namesake(zoo):
    zoo_dir, reg = zoo
    bundled_copy(zoo_dir, "mnist-5x256-eps0.1")
    better = registry.model_folder("mnist-5x512-eps0.1")
    bundle(better, "mnist-5x256-eps0.1", zoo_dir=zoo_dir, registry=reg, replaces="mnist-5x256-eps0.1")
    entry = registry.get_entry("mnist-5x256-eps0.1", reg)
    assert entry.files == registry.get_entry("mnist-5x512-eps0.1").files
    assert registry.check_files(zoo_dir / "mnist-5x256-eps0.1", entry)
    assert sorted(p.name for p in zoo_dir.iterdir()) == ["mnist-5x256-eps0.1"]


@pytest.mark.parametrize("source, old, why", [
    ("mnist-5x256-eps0.1", "mnist-5x512-eps0.1", "replaces a model only by certifying more"),
    ("mnist-5x512-eps0.1", "fmnist-5x512-eps0.1", "only one of the same task"),
    ("mnist-5x512-eps0.1", "mnist-5x512-eps0.3", "only one of the same task"),
    ("mnist-5x512-eps0.1", "default", "not an alias"),
    ("mnist-5x512-eps0.1", "mnist-5x256", "unknown model"),
])
def test_replacing_is_refused_unless_the_new_model_certifies_more_on_the_same_task(zoo, source, old, why):
    zoo_dir, reg = zoo
    if old in registry.list_models():
        bundled_copy(zoo_dir, old)
    listed = sorted(p.name for p in zoo_dir.iterdir()) if zoo_dir.exists() else []
    with pytest.raises(ValueError, match=why):
        bundle(registry.model_folder(source), "new", zoo_dir=zoo_dir, registry=reg, replaces=old)
    assert json.loads(reg.read_text()) == json.loads(registry.registry_path().read_text())
    assert (sorted(p.name for p in zoo_dir.iterdir()) if zoo_dir.exists() else []) == listed


def test_replacing_is_refused_for_figures_over_other_test_images(zoo, tmp_path):
    zoo_dir, reg = zoo
    bundled_copy(zoo_dir, "mnist-5x256-eps0.1")
    old = registry.get_entry("mnist-5x256-eps0.1", reg)
    registry.record_entry(reg, dataclasses.replace(old, test_images=1000))
    with pytest.raises(ValueError, match="same split"):
        bundle(registry.model_folder("mnist-5x512-eps0.1"), "new", zoo_dir=zoo_dir, registry=reg,
               replaces=old.name)
