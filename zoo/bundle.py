"""Add a trained, certified checkpoint folder to the models shipped inside the package.

The figures come from the folder's model card, which training wrote from the independent
verifier; `linfdist zoo recertify NAME` re-derives them afterwards. A model that replaces a
bundled one takes its place and aliases, and only when it certifies more on the same test images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.zoo.publish import stage
from linfdist.zoo.registry import ZooEntry, get_entry, load_registry, record_entry, registry_path


def bundle(folder, name: str, make_default: bool = False, zoo_dir: Path | None = None,
           registry: Path | None = None, replaces: str | None = None) -> ZooEntry:
    """Copy ``folder``'s files into ``zoo_dir/name`` and register it as bundled (``make_default``
    moves the "default" alias to it; ``replaces`` names a bundled model it supersedes, whose place,
    aliases and folder it takes). ``zoo_dir`` and ``registry`` default to the package's own."""
    registry = Path(registry or registry_path())
    zoo_dir = Path(zoo_dir or registry.parent)
    target = zoo_dir / name
    old = get_entry(replaces, registry) if replaces else None
    if old is not None and replaces != old.name:
        raise LinfdistError(f"--replaces takes a model's name, not an alias: {replaces!r} is {old.name}")
    others = [e for e in load_registry(registry) if old is None or e.name != old.name]
    if any(name in (e.name, *e.aliases) for e in others) or (old is not None and name in old.aliases):
        raise LinfdistError(f"{name} is already registered")
    if target.exists() and (old is None or name != old.bundled):
        raise FileExistsError(f"{target} exists")
    files, fields = stage(Path(folder))
    entry = ZooEntry(name=name, repo_id=f"linfdist/{name}", revision=None, files=files, **fields, bundled=name)
    if old is not None:
        check_supersedes(entry, old)
    partial = target.with_name(f".{name}.partial")  # a stopped copy never looks like a bundled model
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for file in files:
        shutil.copyfile(Path(folder) / file, partial / file)
    retired = zoo_dir / f".{old.bundled}.replaced" if old is not None else None
    if retired is not None:  # out of the way first: the new folder may take the old one's name
        shutil.rmtree(retired, ignore_errors=True)
        (zoo_dir / old.bundled).rename(retired)
    partial.rename(target)
    record_entry(registry, entry, make_default, replaces=old.name if old is not None else None)
    if retired is not None:
        shutil.rmtree(retired)
    return entry


def check_supersedes(new: ZooEntry, old: ZooEntry) -> None:
    """Refuse ``new`` as ``old``'s replacement unless it is bundled, of the same task, certified on
    the same number of test images, and certifies strictly more."""
    if not old.bundled:
        raise LinfdistError(f"{old.name} is not bundled; only a bundled model can be replaced by bundling")
    if (new.dataset, new.eps) != (old.dataset, old.eps):
        raise LinfdistError(f"{old.name} is {old.dataset} at ε = {old.eps:g}, the new model {new.dataset} at "
                            f"ε = {new.eps:g}: a model replaces only one of the same task")
    if new.test_images != old.test_images:
        raise LinfdistError(f"the new model's figures are over {new.test_images} test images, {old.name}'s over "
                            f"{old.test_images}: certify both on the same split")
    if new.certified_accuracy <= old.certified_accuracy:
        raise LinfdistError(f"the new model certifies {new.certified_accuracy:.2f}%, {old.name} "
                            f"{old.certified_accuracy:.2f}%: it replaces a model only by certifying more")
