"""The zoo's figures have one writer: the verifier, through the registry.

``recertify`` derives a bundled model's figures with the independent verifier and records them in
the registry; ``sync_zoo`` regenerates from the registry everything that quotes them: each bundled
model's card (so the ONNX metadata, which export copies from the card) and the README's zoo table.
Both rewrite files of the source checkout, never of an installed package. Only the documents that show
the figures (the card and its curves, which ``linfdist curves`` may redraw) are re-pinned; a model's
own files change only by bundling it anew.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from linfdist.curves import CURVES_FILE
from linfdist.data import dataset_info, load_dataset
from linfdist.errors import LinfdistError
from linfdist.files import CARD_FILE, sha256_file
from linfdist.models import load_pretrained
from linfdist.workflows.certification import certify_folder
from linfdist.zoo import bundled_model_dir
from linfdist.zoo.card import rewrite_results
from linfdist.zoo.published import eps_text, published
from linfdist.zoo.registry import ZooEntry, check_files, get_entry, load_registry, record_entry, registry_path

TABLE_START, TABLE_END = "<!-- zoo-table -->", "<!-- /zoo-table -->"
DOCUMENTS = (CARD_FILE, CURVES_FILE)  # what sync may re-pin; every other registered file is the model


def source_checkout() -> Path:
    """The repository whose zoo/ the package's registry is (an editable install); refuses an installed copy."""
    root = registry_path().resolve().parent.parent
    if not ((root / "pyproject.toml").is_file() and (root / "zoo" / "registry.json").is_file()):
        raise LinfdistError("the zoo's figures are rewritten in a linfdist source checkout (pip install -e .), "
                            f"not in the installed package at {registry_path().parent}")
    return root


def recertify(name: str, data_dir=None, progress: bool = True, registry: Path | None = None,
              folder: Path | None = None) -> ZooEntry:
    """Verify the bundled model ``name`` on its full test set, record the figures in the registry and
    regenerate its card from them (``registry`` and ``folder`` default to the checkout's own)."""
    registry = Path(registry) if registry else source_checkout() / "zoo" / "registry.json"
    entry = get_entry(name, registry)
    if not entry.bundled:
        raise LinfdistError(f"{entry.name} is not bundled: its files change only through `linfdist zoo publish`")
    folder = check_files(Path(folder) if folder else bundled_model_dir(entry.name), entry)
    images, labels = load_dataset(entry.dataset, "test", data_dir)
    results = certify_folder(folder, images, labels, entry.eps, progress)
    entry = replace(entry, clean_accuracy=round(results["clean_accuracy"], 2),
                    certified_accuracy=round(results["certified_accuracy"], 2),
                    certified_accuracy_margin=round(results["certified_accuracy_margin"], 2),
                    certified_accuracy_ibp=round(results["certified_accuracy_ibp"], 2),
                    test_images=results["n"], certifier=results["certifier"])
    entry = _write_card(entry, folder)  # the card is the one file that changes (check_files verified the others)
    record_entry(registry, entry)
    return entry


def _write_card(entry: ZooEntry, folder: Path) -> ZooEntry:
    """Regenerate ``folder``'s card figures from ``entry`` (its training sections kept); the entry with its
    documents' new sha256."""
    rewrite_results(folder, load_pretrained(folder).config, entry.results(), entry.name, entry.base_model)
    documents = {name: sha256_file(folder / name) for name in entry.files if name in DOCUMENTS}
    return replace(entry, files={**entry.files, **documents})


def sync_zoo(registry: Path | None = None, zoo_dir: Path | None = None, readme: Path | None = None) -> list[Path]:
    """Regenerate every bundled card from the registry, re-pin the cards and curves (a redrawn curves.png
    included) after checking each model's own files against their pins, and rewrite the README's zoo table
    between its markers; returns the files that changed."""
    root = None if registry and zoo_dir and readme else source_checkout()
    registry = Path(registry or root / "zoo" / "registry.json")
    zoo_dir = Path(zoo_dir or registry.parent)
    readme = Path(readme or root / "README.md")
    changed, repinned = [], False
    for entry in load_registry(registry):
        if not entry.bundled:
            continue
        card = zoo_dir / entry.bundled / CARD_FILE
        model_files = {name: digest for name, digest in entry.files.items() if name not in DOCUMENTS}
        check_files(card.parent, replace(entry, files=model_files))
        before = card.read_bytes() if card.is_file() else b""
        synced = _write_card(entry, card.parent)
        if card.read_bytes() != before:
            changed.append(card)
        if synced != entry:
            record_entry(registry, synced)
            repinned = True
    if repinned:
        changed.append(registry)
    text = readme.read_text()
    table = zoo_table(load_registry(registry))
    updated = replace_between(text, TABLE_START, TABLE_END, table, readme)
    if updated != text:
        readme.write_text(updated)
        changed.append(readme)
    return changed


def replace_between(text: str, start: str, end: str, body: str, where) -> str:
    """``text`` with what lies between the marker lines ``start`` and ``end`` replaced by ``body``."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise LinfdistError(f"{where}: needs one {start} line followed by one {end} line")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}"


def zoo_table(entries) -> str:
    """The README's table of registered models, from their registry entries."""
    rows = ["| model | data | ε | net | clean | certified | published certified (papers, width 5120) |",
            "|---|---|---|---|---|---|---|"]
    for e in entries:
        size = re.search(r"(\d+) layers x (\d+)", e.architecture)
        net = f"{size[1]} × {size[2]}" if size else e.architecture
        aliases = "".join(f" (`{a}`)" for a in e.aliases)
        papers = ", ".join(f"{p.certified:.2f} ({p.paper})" for p in published(e.dataset, e.eps)) or "–"
        rows.append(f"| `{e.name}`{aliases} | {dataset_info(e.dataset).title} | {eps_text(e.eps)} | {net} | "
                    f"{e.clean_accuracy:.2f}% | {e.certified_accuracy:.2f}% | {papers} |")
    return "\n".join(rows) + "\n"
