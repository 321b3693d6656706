"""The registry is the one writer of the zoo's figures: cards, ONNX metadata and the README's zoo table
are what `linfdist zoo sync` generates from it (tests/test_default_model.py checks that the registry's
figures are what the verifier derives)."""

import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from huggingface_hub import ModelCard

from linfdist.export import export_checkpoint
from linfdist.workflows import sync_zoo, zoo_table
from linfdist.workflows.zoo_figures import TABLE_END, TABLE_START, replace_between
from linfdist.zoo import bundled_model_dir
from linfdist.zoo.published import eps_text, published
from linfdist.zoo.registry import check_files, load_registry, record_entry, registry_path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = [entry for entry in load_registry() if entry.bundled]


@pytest.fixture
def checkout(tmp_path):
    """A copy of the zoo (registry, bundled folders) and the README to sync."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(registry_path(), zoo / "registry.json")
    for entry in BUNDLED:
        shutil.copytree(bundled_model_dir(entry.name), zoo / entry.bundled)
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    return zoo / "registry.json", zoo, tmp_path / "README.md"


def test_cards_registry_and_readme_are_in_sync(checkout):
    """Regenerating everything from the registry changes nothing that is committed."""
    assert sync_zoo(*checkout) == []


def test_sync_rewrites_a_card_that_drifted_and_repins_it(checkout):
    registry, zoo, readme = checkout
    entry = BUNDLED[0]
    card = zoo / entry.bundled / "README.md"
    card.write_text(card.read_text().replace(f"{entry.certified_accuracy:.2f}%", "99.99%"))
    readme.write_text(readme.read_text().replace(f"{entry.certified_accuracy:.2f}%", "99.99%"))
    assert sync_zoo(registry, zoo, readme) == [card, readme]
    assert "99.99%" not in card.read_text() and "99.99%" not in readme.read_text()
    assert next(e for e in load_registry(registry) if e.name == entry.name).files == entry.files


def test_sync_repins_redrawn_curves(checkout):
    """`linfdist curves` may redraw a bundled model's curves.png; sync pins the new drawing."""
    registry, zoo, readme = checkout
    entry = next(e for e in BUNDLED if "curves.png" in e.files)
    folder = zoo / entry.bundled
    (folder / "curves.png").write_bytes((folder / "curves.png").read_bytes() + b"redrawn")
    with pytest.raises(ValueError, match="sha256 mismatch for curves.png"):
        check_files(folder, entry)
    assert sync_zoo(registry, zoo, readme) == [registry]  # no card or table changed, only a pin
    synced = next(e for e in load_registry(registry) if e.name == entry.name)
    assert synced.files["curves.png"] != entry.files["curves.png"]
    assert {k: v for k, v in synced.files.items() if k != "curves.png"} == \
        {k: v for k, v in entry.files.items() if k != "curves.png"}
    assert check_files(folder, synced) == folder


@pytest.mark.parametrize("changed", ["model.safetensors", "config.json"])
def test_sync_refuses_a_model_that_changed(checkout, changed):
    """A model's own files change only by bundling it anew: sync does not re-pin them."""
    registry, zoo, readme = checkout
    entry = BUNDLED[0]
    path = zoo / entry.bundled / changed
    path.write_bytes(path.read_bytes() + b" ")
    before = registry.read_bytes()
    with pytest.raises(ValueError, match=f"sha256 mismatch for {changed}"):
        sync_zoo(registry, zoo, readme)
    assert registry.read_bytes() == before


def test_a_recorded_figure_reaches_card_and_readme(checkout):
    registry, zoo, readme = checkout
    entry = BUNDLED[-1]
    record_entry(registry, replace(entry, certified_accuracy=12.34))
    sync_zoo(registry, zoo, readme)
    claims = {r.metric_type: r.metric_value for r in ModelCard.load(zoo / entry.bundled / "README.md").data.eval_results}
    assert claims["certified_accuracy"] == 12.34
    assert f"| `{entry.name}`" in readme.read_text() and "12.34%" in readme.read_text()


@pytest.mark.parametrize("entry", BUNDLED, ids=[e.name for e in BUNDLED])
def test_exported_metadata_claims_the_registrys_figures(entry, tmp_path):
    model = onnx.load(str(export_checkpoint(bundled_model_dir(entry.name), tmp_path / "m.onnx")),
                      load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["linfdist.claimed.clean_accuracy"]) == entry.clean_accuracy
    assert float(meta["linfdist.claimed.certified_accuracy"]) == entry.certified_accuracy
    assert float(meta["linfdist.claimed.eps"]) == entry.eps


def test_every_bundled_entry_records_every_figure():
    for entry in BUNDLED:
        assert None not in entry.results().values(), entry.name
        assert entry.test_images == 10000


def test_zoo_table_rows():
    table = zoo_table(load_registry())
    rows = table.splitlines()
    assert len(rows) == 2 + len(load_registry())
    default = next(r for r in rows if "(`default`)" in r)
    assert "97.95 (v2), 98.14 (SortNet)" in default
    assert any("| 8/255 |" in r for r in rows)
    assert eps_text(8 / 255) == "8/255" and eps_text(0.3) == "0.3" and published("mnist", 0.2) == ()


def test_the_readme_needs_its_markers():
    with pytest.raises(ValueError, match="zoo-table"):
        replace_between("no markers", TABLE_START, TABLE_END, "x", "README.md")
    assert replace_between(f"a\n{TABLE_START}\nold\n{TABLE_END}\nb", TABLE_START, TABLE_END, "new\n", "R") == \
        f"a\n{TABLE_START}\nnew\n{TABLE_END}\nb"


def test_installed_copies_are_not_rewritten(monkeypatch, tmp_path):
    """recertify and sync write a source checkout only, never an installed package."""
    from linfdist.workflows import zoo_figures

    (tmp_path / "site" / "zoo").mkdir(parents=True)
    monkeypatch.setattr(zoo_figures, "registry_path", lambda: tmp_path / "site" / "zoo" / "registry.json")
    with pytest.raises(ValueError, match="source checkout"):
        zoo_figures.source_checkout()
