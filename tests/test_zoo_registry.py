"""The zoo registry: pinned files, claims that match the cards, checked loading, close-name hints."""

import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

from linfdist import zoo
from linfdist.zoo import registry


def test_registry_pins_the_bundled_files_and_repeats_the_card():
    for entry in registry.load_registry():
        folder = registry.model_folder(entry.name)  # raises on any sha256 mismatch
        assert sorted(entry.files) == sorted(p.name for p in folder.iterdir() if p.is_file())
        config = json.loads((folder / "config.json").read_text())
        assert (entry.dataset, entry.eps) == (config["dataset"], config["eps"])
        claims = {r.metric_type: r.metric_value for r in ModelCard.load(folder / "README.md").data.eval_results}
        assert (entry.clean_accuracy, entry.certified_accuracy) == (claims["clean_accuracy"],
                                                                    claims["certified_accuracy"])
        assert entry.revision is None, "a revision is recorded only by a real upload"


def test_load_by_name_and_alias():
    assert zoo.list_models() == ["mnist-5x512-eps0.1", "mnist-5x256-eps0.1", "fmnist-5x512-eps0.1", "mnist-5x512-eps0.3",
                                 "cifar10-6x512-eps8_255", "cifar10-6x512-eps2_255"]
    a, b = zoo.load("default"), zoo.load("mnist-5x512-eps0.1")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_tampered_or_missing_files_are_refused(tmp_path):
    entry = registry.get_entry("default")
    folder = tmp_path / "copy"
    shutil.copytree(registry.model_folder("default"), folder)
    assert registry.check_files(folder, entry) == folder
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch for model.safetensors"):
        registry.check_files(folder, entry)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        registry.check_files(folder, entry)


def test_unpublished_unbundled_models_are_not_fetched(tmp_path, monkeypatch):
    doc = json.loads(registry.registry_path().read_text())
    entry = dict(doc["models"][0], name="cifar-someday", aliases=[], bundled=None)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"schema": registry.SCHEMA, "models": [entry]}))
    monkeypatch.setattr(registry, "registry_path", lambda: path)
    with pytest.raises(FileNotFoundError, match="not published yet"):
        registry.model_folder("cifar-someday")
    with pytest.raises(ValueError, match="did you mean cifar-someday"):
        registry.get_entry("cifar-some")
    from linfdist.workflows import recertify

    with pytest.raises(ValueError, match="not bundled: its files change only through `linfdist zoo publish`"):
        recertify("cifar-someday", registry=path)


def test_malformed_registries_are_refused(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"schema": "other/9", "models": []}))
    with pytest.raises(ValueError, match="schema"):
        registry.load_registry(path)
    path.write_text(json.dumps({"schema": registry.SCHEMA, "models": [{"name": "x"}]}))
    with pytest.raises(ValueError, match="malformed registry entry"):
        registry.load_registry(path)


def test_published_models_load_offline_from_the_hf_cache(tmp_path, monkeypatch):
    """A published entry resolves through hf_hub_download from the standard cache layout, offline."""
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"  # a test cache's commit, not a real upload
    repo = tmp_path / "hub" / "models--someone--mnist-test"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(registry.model_folder("default"), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    doc = json.loads(registry.registry_path().read_text())
    entry = dict(doc["models"][0], name="mnist-from-hub", aliases=[], bundled=None, repo_id="someone/mnist-test",
                 revision=commit)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"schema": registry.SCHEMA, "models": [doc["models"][0], entry]}))
    monkeypatch.setattr(registry, "registry_path", lambda: path)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert registry.model_folder("mnist-from-hub") == snapshot
    model = zoo.load("mnist-from-hub")
    reference = zoo.load("default")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    weights = snapshot / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match="sha256 mismatch"):
        zoo.load("mnist-from-hub")


def test_from_pretrained_reads_a_sharded_repo_offline_from_the_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from linfdist import models

    monkeypatch.setattr(models, "SHARD_BYTES", 4000)
    net = models.LinfDistNet(models.LinfDistNetConfig(input_shape=[1, 4, 4], depth=4, width=24))
    commit = "89abcdef0123456789abcdef0123456789abcdef"  # a test cache's commit, not a real upload
    repo = tmp_path / "hub" / "models--someone--sharded"
    net.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert len(list((repo / "snapshots" / commit).glob("model-*.safetensors"))) >= 2
    for revision in (commit, None):  # pinned, and the cached main
        loaded = models.LinfDistNet.from_pretrained("someone/sharded", revision=revision)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


def test_bundled_folders_resolve_by_name_or_alias():
    default = zoo.bundled_model_dir()
    assert default == zoo.bundled_model_dir(registry.get_entry("default").name)
    assert default.name == registry.get_entry("default").bundled
    with pytest.raises(ValueError, match="unknown model"):
        zoo.bundled_model_dir("no-such-model")
