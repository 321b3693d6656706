"""One loader and one MODEL argument: zoo names and aliases, folders, Hub repo ids (offline from the HF
cache), .onnx files; timm-style create_model; zoo list's filters and JSON."""

import json
import shutil

import pytest
import torch

import linfdist
from linfdist.cli import main
from linfdist.workflows import resolve_model
from linfdist.zoo import bundled_model_dir


def test_load_model_takes_zoo_names_aliases_and_folders(tmp_path):
    default = linfdist.load_model()
    assert not default.training
    by_alias, by_name = linfdist.load_model("default"), linfdist.load_model("mnist-5x512-eps0.1")
    folder = shutil.copytree(bundled_model_dir(), tmp_path / "copy")
    by_folder = linfdist.load_model(str(folder))
    for other in (by_alias, by_name, by_folder):
        assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), other.state_dict().values()))


def test_a_hub_repo_id_resolves_offline_from_the_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    commit = "0123456789abcdef0123456789abcdef01234567"  # a test cache's commit, not a real upload
    repo = tmp_path / "hub" / "models--someone--mnist-test"
    shutil.copytree(bundled_model_dir(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    source = resolve_model("someone/mnist-test")
    assert source.path == repo / "snapshots" / commit and not source.is_onnx and source.zoo_name is None
    assert linfdist.load_model("someone/mnist-test").config.width == 512
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        resolve_model("someone/not-cached")


def test_model_arguments_say_what_is_wrong(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="not an ONNX file"):
        resolve_model(str(tmp_path / "image.png"))
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(ValueError, match="did you mean mnist-5x512-eps0.3"):
        resolve_model("mnist-5x512-eps03")
    with pytest.raises(ValueError, match="is an ONNX file"):
        linfdist.load_model(_onnx(tmp_path))


def _onnx(tmp_path):
    from linfdist.export import export_checkpoint

    return str(export_checkpoint(bundled_model_dir(), tmp_path / "m.onnx"))


def test_create_model_follows_timm():
    fresh = linfdist.create_model("mnist-5x512-eps0.3", pretrained=False)
    trained = linfdist.create_model("mnist-5x512-eps0.3")
    assert fresh.config.to_dict() == trained.config.to_dict()
    assert not torch.equal(fresh.trunk.layers[2].weight, trained.trunk.layers[2].weight)
    annealing = linfdist.create_model("mnist-5x512-eps0.3", p=8.0)
    assert annealing.config.p == 8.0 and torch.equal(annealing.trunk.layers[2].weight, trained.trunk.layers[2].weight)


def test_zoo_list_filters_and_json(capsys):
    assert main(["zoo", "list", "--dataset", "cifar10", "--eps", "8/255"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "8/255" in out[1] and "40.39% (SortNet)" in out[1]
    assert main(["zoo", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    default = next(e for e in doc if "default" in e["aliases"])
    assert default["best_published"] == {"paper": "SortNet", "certified": 98.14} and default["eps_text"] == "0.1"


def test_class_names_travel_in_config_onnx_and_card(tmp_path, capsys, shared_data):
    """id2label in config.json (Hub convention), the ONNX metadata and the card; certify prints them."""
    import onnx
    from huggingface_hub import ModelCard
    from PIL import Image

    from linfdist.data import load_dataset
    from linfdist.export import export_checkpoint

    folder = bundled_model_dir("fmnist-5x512-eps0.1")
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"]["9"] == "Ankle boot" and len(config["id2label"]) == 10
    meta = {p.key: p.value for p in onnx.load(str(export_checkpoint(folder, tmp_path / "f.onnx"))).metadata_props}
    assert json.loads(meta["linfdist.classes"])[0] == "T-shirt/top"
    assert "9 Ankle boot" in ModelCard.load(folder / "README.md").text
    images, labels = load_dataset("fashion-mnist", "test", shared_data)
    Image.fromarray(images[0, 0]).save(tmp_path / "item.png")
    assert main(["certify", str(tmp_path / "item.png"), "--model", "fmnist-5x512-eps0.1"]) == 0
    name = config["id2label"][str(int(labels[0]))]
    assert f"({name})" in capsys.readouterr().out


def test_from_pretrained_takes_zoo_names_before_the_hub(monkeypatch):
    """LinfDistNet.from_pretrained("zoo-name") resolves through the registered resolver (an entry point, so core
    never imports the zoo), offline; anything else still goes to the Hub."""
    import huggingface_hub.constants as hub_constants

    from linfdist.models import LinfDistNet

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    model = LinfDistNet.from_pretrained("mnist-5x512-eps0.3")
    reference = linfdist.load_model("mnist-5x512-eps0.3")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert LinfDistNet.from_pretrained("default").config.eps == 0.1
    with pytest.raises(Exception, match="cache|offline|connection"):
        LinfDistNet.from_pretrained("someone/not-a-zoo-model")


def test_verify_names_the_classes(shared_data, capsys, tmp_path):
    report = tmp_path / "r.json"
    assert main(["verify", "fmnist-5x512-eps0.1", "--data-dir", str(shared_data), "--limit", "20", "--runtimes",
                 "reference", "--quiet", "--json", str(report)]) == 0
    assert "classes T-shirt/top, Trouser" in capsys.readouterr().out
    assert json.loads(report.read_text())["classes"][9] == "Ankle boot"
