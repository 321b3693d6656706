"""The bundled models: what their cards and registry entries state is what the verifier derives."""

import math
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from linfdist.data import load_dataset
from linfdist.models import LinfDistNet, load_pretrained
from linfdist.zoo import bundled_model_dir
from linfdist.zoo.registry import load_registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def card_metrics():
    card = ModelCard.load(bundled_model_dir() / "README.md")
    assert card.data.library_name == "linfdist"
    return {r.metric_type: r.metric_value for r in card.data.eval_results}


def test_default_model_loads_at_p_inf():
    model = load_pretrained(bundled_model_dir())
    assert isinstance(model, LinfDistNet)
    assert math.isinf(model.config.p) and model.config.dataset == "mnist" and model.config.eps == 0.1
    assert (bundled_model_dir() / "model.safetensors").stat().st_size < 15 * 2**20


BUNDLED = [entry.name for entry in load_registry() if entry.bundled]


@pytest.mark.parametrize("name", BUNDLED)
def test_card_and_registry_are_what_the_verifier_derives(name, tmp_path, request):
    """`linfdist zoo recertify NAME` on copies reproduces the card and registry entry byte for byte
    (re-certifies the model's whole test set with the independent verifier)."""
    import shutil

    from linfdist.workflows import recertify
    from linfdist.zoo.registry import get_entry, registry_path

    # MNIST's test split ships with the package; other datasets come from the shared data (else skip)
    data_dir = None if get_entry(name).dataset == "mnist" else request.getfixturevalue("shared_data")
    folder = shutil.copytree(bundled_model_dir(name), tmp_path / name)
    registry = shutil.copy(registry_path(), tmp_path / "registry.json")
    entry = recertify(name, data_dir=data_dir, progress=False, registry=Path(registry), folder=folder)
    assert entry == get_entry(name)
    assert (folder / "README.md").read_bytes() == (bundled_model_dir(name) / "README.md").read_bytes()
    assert entry.certifier.startswith("linfdist.verify ")


def test_pgd_never_breaks_a_certificate_of_the_default_model():
    """Sign-gradient attacks at ε on real test images: every certified sample keeps its label."""
    import torch

    from linfdist.certify import certify, margin
    from linfdist.evaluate import pixels

    model = load_pretrained(bundled_model_dir())
    images, labels = load_dataset("mnist", "test")
    x, y = pixels(images[:300]), torch.from_numpy(labels[:300])
    eps = model.config.eps
    cert = certify(model, x, y, eps)
    torch.manual_seed(0)
    delta = (torch.rand_like(x) * 2 - 1) * eps
    for _ in range(30):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(margin(model((x + delta).clamp(0, 1)), y).sum(), delta)
        delta = (delta.detach() - eps / 4 * grad.sign()).clamp(-eps, eps)
    with torch.no_grad():
        robust = model((x + delta).clamp(0, 1)).argmax(1) == y
    assert cert.certified.sum() > 250
    assert robust[cert.certified].all(), "an attack broke a certificate"
