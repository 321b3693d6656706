"""The model zoo: the bundled default model, model cards and (later) the Hub registry."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "default"


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Folder of a model shipped inside the package (Hub layout)."""
    path = Path(str(resources.files("linfdist.zoo") / name))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no bundled model {name!r} at {path}")
    return path
