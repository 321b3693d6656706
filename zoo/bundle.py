"""Add a trained, certified checkpoint folder to the models shipped inside the package.

The figures come from the folder's model card, which training wrote from the independent
verifier; `linfdist zoo recertify NAME` re-derives them afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.zoo.publish import stage
from linfdist.zoo.registry import ZooEntry, load_registry, record_entry, registry_path


def bundle(folder, name: str, make_default: bool = False, zoo_dir: Path | None = None,
           registry: Path | None = None) -> ZooEntry:
    """Copy ``folder``'s files into ``zoo_dir/name`` and register it as bundled (``make_default``
    moves the "default" alias to it). ``zoo_dir`` and ``registry`` default to the package's own."""
    registry = Path(registry or registry_path())
    target = Path(zoo_dir or registry.parent) / name
    if any(name in (e.name, *e.aliases) for e in load_registry(registry)):
        raise LinfdistError(f"{name} is already registered")
    if target.exists():
        raise FileExistsError(f"{target} exists")
    files, fields = stage(Path(folder))
    entry = ZooEntry(name=name, repo_id=f"linfdist/{name}", revision=None, files=files, **fields, bundled=name)
    partial = target.with_name(f".{name}.partial")  # a stopped copy never looks like a bundled model
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for file in files:
        shutil.copyfile(Path(folder) / file, partial / file)
    partial.rename(target)
    record_entry(registry, entry, make_default)
    return entry
