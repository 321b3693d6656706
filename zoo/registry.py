"""The zoo's registry (``registry.json``): which models exist, where they live, what they claim.

Each entry pins every file by sha256. ``repo_id`` is the Hub repository a model is (or
will be) published to; ``revision`` stays null until ``publish`` records a real upload,
so an unpublished model loads only from its bundled copy. Nothing is ever fetched
for a model whose files do not match the registry.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.files import atomic_path, sha256_file

SCHEMA = "linfdist.zoo/1"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    repo_id: str
    revision: str | None
    files: dict
    dataset: str
    eps: float
    architecture: str
    clean_accuracy: float
    certified_accuracy: float
    certifier: str
    license: str
    bundled: str | None = None
    aliases: list = field(default_factory=list)
    certified_accuracy_margin: float | None = None  # the margin certificate alone (None: not recorded)
    certified_accuracy_ibp: float | None = None  # interval bounds alone
    test_images: int | None = None  # how many test images the figures are over
    base_model: str | None = None  # the Hub repository of the model it was fine-tuned from

    def results(self) -> dict:
        """The figures in the form the verifier's workflow produces them (``workflows.certify_folder``)."""
        return {"n": self.test_images, "eps": self.eps, "clean_accuracy": self.clean_accuracy,
                "certified_accuracy": self.certified_accuracy,
                "certified_accuracy_margin": self.certified_accuracy_margin,
                "certified_accuracy_ibp": self.certified_accuracy_ibp, "certifier": self.certifier}


def registry_path() -> Path:
    return Path(str(resources.files("linfdist.zoo") / "registry.json"))


def load_registry(path: Path | None = None) -> list[ZooEntry]:
    """Every registered model, refusing a registry with unknown or missing fields."""
    data = json.loads((path or registry_path()).read_text())
    if data.get("schema") != SCHEMA:
        raise LinfdistError(f"registry schema {data.get('schema')!r} is not {SCHEMA!r}")
    try:
        return [ZooEntry(**entry) for entry in data["models"]]
    except TypeError as err:
        raise LinfdistError(f"malformed registry entry: {err}") from None


def record_entry(path: Path, entry: ZooEntry, make_default: bool = False, replaces: str | None = None) -> None:
    """Add ``entry`` to the registry file, or put it in place of the entry of its name (or of ``replaces``,
    whose aliases it takes), in one atomic write; ``make_default`` moves the "default" alias to it in the
    same write."""
    from linfdist.zoo import DEFAULT_MODEL

    models = load_registry(path)
    slot = replaces or entry.name
    if replaces:
        old = next((e for e in models if e.name == replaces), None)
        if old is None:
            raise LinfdistError(f"{replaces} is not registered")
        entry = replace(entry, aliases=[*entry.aliases, *(a for a in old.aliases if a not in entry.aliases)])
    taken = [e.name for e in models if e.name != slot
             and ({e.name, *e.aliases} & {entry.name, *entry.aliases})]
    if taken:
        raise LinfdistError(f"{entry.name}: its name or an alias is already used by {', '.join(taken)}")
    if make_default:
        models = [replace(e, aliases=[a for a in e.aliases if a != DEFAULT_MODEL]) for e in models]
        entry = replace(entry, aliases=[*(a for a in entry.aliases if a != DEFAULT_MODEL), DEFAULT_MODEL])
    names = [e.name for e in models]
    models = [entry if e.name == slot else e for e in models] + ([] if slot in names else [entry])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"schema": SCHEMA, "models": [asdict(e) for e in models]}, indent=2) + "\n")


def list_models() -> list[str]:
    """Names of the registered models."""
    return [entry.name for entry in load_registry()]


def get_entry(name: str, registry: Path | None = None) -> ZooEntry:
    """The entry named ``name`` (or one of its aliases); an unknown name suggests close ones."""
    entries = load_registry(registry)
    for entry in entries:
        if name == entry.name or name in entry.aliases:
            return entry
    known = [e.name for e in entries] + [a for e in entries for a in e.aliases]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    raise LinfdistError(f"unknown model {name!r}{hint}")


def check_files(folder: Path, entry: ZooEntry) -> Path:
    """``folder`` if every registered file is there with its pinned sha256, else a one-line error."""
    for name, expected in entry.files.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{entry.name}: {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise LinfdistError(f"{entry.name}: sha256 mismatch for {name} (registry {expected[:12]}…, file {actual[:12]}…); "
                             "refusing to load it")
    return folder


def model_folder(name: str) -> Path:
    """A checked local folder holding the model: the bundled copy, else the Hub (HF cache first)."""
    entry = get_entry(name)
    if entry.bundled:
        from linfdist.zoo import bundled_model_dir

        return check_files(bundled_model_dir(entry.name), entry)
    if entry.revision is None:
        raise FileNotFoundError(f"{entry.name} is not published yet (no revision in the registry) and not bundled")
    from huggingface_hub import hf_hub_download

    paths = [Path(hf_hub_download(entry.repo_id, f, revision=entry.revision)) for f in entry.files]
    return check_files(paths[0].parent, entry)


def load(name: str):
    """The registered model ``name``, files checked against the registry, in eval mode."""
    from linfdist.models import load_pretrained

    return load_pretrained(model_folder(name))
