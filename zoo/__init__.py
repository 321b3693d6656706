"""The model zoo: the registry of published models, the bundled default model, model cards."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "default"


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Folder of a model shipped inside the package (Hub layout), by registry name or alias
    ("default" is whichever model the registry gives that alias)."""
    from linfdist.zoo.registry import get_entry

    entry = get_entry(name)
    if not entry.bundled:
        raise FileNotFoundError(f"{entry.name} is not bundled with linfdist (see `linfdist zoo download`)")
    path = Path(str(resources.files("linfdist.zoo") / entry.bundled))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no bundled model {entry.name!r} at {path}")
    return path


def list_models() -> list[str]:
    """Names of the registered models (see ``linfdist.zoo.registry``)."""
    from linfdist.zoo.registry import list_models as names

    return names()


def load(name: str):
    """A registered model by name, its files checked against the registry's sha256."""
    from linfdist.zoo.registry import load as load_model

    return load_model(name)
