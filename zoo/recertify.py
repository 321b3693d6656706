"""Re-derive a bundled model's figures with the independent verifier; rewrite its card and registry entry.

Published models are pinned to a Hub revision, so their files change only by publishing
again; this is for the models committed in the repository.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from linfdist.files import sha256_file
from linfdist.zoo import bundled_model_dir
from linfdist.zoo.registry import ZooEntry, check_files, get_entry, record_entry, registry_path


def recertify(name: str, data_dir=None, progress: bool = True, registry: Path | None = None,
              folder: Path | None = None) -> ZooEntry:
    """Verify the bundled model ``name`` on its full test set and record what the verifier derived
    (``registry`` and ``folder`` default to the package's own; tests point them at copies)."""
    from linfdist.data import load_dataset
    from linfdist.models import load_pretrained
    from linfdist.zoo.card import rewrite_results, verified_results

    entry = get_entry(name)
    if not entry.bundled:
        raise ValueError(f"{entry.name} is not bundled: its files change only through `linfdist zoo publish`")
    folder = check_files(Path(folder) if folder else bundled_model_dir(entry.name), entry)
    config = load_pretrained(folder).config
    images, labels = load_dataset(entry.dataset, "test", data_dir)
    results = verified_results(folder, images, labels, entry.eps, progress)
    rewrite_results(folder, config, results)
    entry = replace(
        entry, files={f: sha256_file(folder / f) for f in entry.files},
        clean_accuracy=round(results["clean_accuracy"], 2),
        certified_accuracy=round(results["certified_accuracy"], 2), certifier=results["certifier"],
    )
    record_entry(registry or registry_path(), entry)
    return entry
