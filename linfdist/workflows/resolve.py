"""One meaning for a MODEL argument, whatever the command: a zoo name or alias, a checkpoint folder,
a Hugging Face Hub repository id, or an .onnx file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from linfdist.errors import LinfdistError
from linfdist.models import CONFIG_FILE

#: ``owner/name`` as the Hub spells repository ids.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
ONNX_SUFFIX = ".onnx"


@dataclass(frozen=True)
class ModelSource:
    """What a MODEL argument named: ``path`` is the .onnx file or the checkpoint folder;
    ``zoo_name`` is the registry name when it came from the zoo."""

    path: Path
    is_onnx: bool
    zoo_name: str | None = None

    def __str__(self) -> str:
        return self.zoo_name or str(self.path)


def is_onnx_path(arg: str | Path) -> bool:
    return str(arg).lower().endswith(ONNX_SUFFIX)


def resolve_model(arg: str | None) -> ModelSource:
    """The model ``arg`` names (None: the zoo's default). Local paths win over zoo names, zoo names
    over Hub ids; a Hub repository resolves through the HF cache (offline with ``HF_HUB_OFFLINE=1``).
    Anything else is a one-line FileNotFoundError or ValueError."""
    from linfdist.zoo import DEFAULT_MODEL
    from linfdist.zoo.registry import get_entry, model_folder

    arg = DEFAULT_MODEL if arg is None else str(arg)
    path = Path(arg).expanduser()
    if is_onnx_path(arg):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        return ModelSource(path, True)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise LinfdistError(f"{path} is not a linfdist checkpoint folder (no {CONFIG_FILE})")
        return ModelSource(path, False)
    if path.exists():
        raise LinfdistError(f"{path} is not an ONNX file ({ONNX_SUFFIX}) nor a checkpoint folder")
    try:
        entry = get_entry(arg)
    except ValueError as unknown:
        if _REPO_ID.match(arg):
            return ModelSource(_hub_folder(arg), False)
        if "/" in arg or arg.startswith("."):
            raise FileNotFoundError(f"{arg}: no such file or folder, and not a zoo model") from None
        raise unknown from None
    return ModelSource(model_folder(entry.name), False, entry.name)


def registered_folder(name: str) -> Path | None:
    """The checked folder of a zoo model or alias ``name``, or None when the registry has no such name (the
    ``linfdist.model_resolvers`` entry point LinfDistNet.from_pretrained consults before the Hub)."""
    from linfdist.zoo.registry import get_entry, model_folder

    try:
        entry = get_entry(name)
    except ValueError:
        return None
    return model_folder(entry.name)


def resolve_folder(arg: str | None) -> Path:
    """The checkpoint folder ``arg`` names (for commands that need weights, not an ONNX graph)."""
    source = resolve_model(arg)
    if source.is_onnx:
        raise LinfdistError(f"{source.path} is an ONNX file; this needs a checkpoint folder "
                         f"({CONFIG_FILE} + safetensors), a zoo name or a Hub repository")
    return source.path


def _hub_folder(repo_id: str) -> Path:
    """A Hub repository's snapshot, from the HF cache when offline; one line when it cannot be had."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id=repo_id))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{repo_id}: not a local path or zoo model, and not in the Hugging Face cache "
                                "(offline, or the Hub is unreachable)") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise FileNotFoundError(f"{repo_id}: not a local path or zoo model, and the Hub gives no such "
                                f"repository ({type(err).__name__})") from None
    if not (folder / CONFIG_FILE).is_file():
        raise LinfdistError(f"Hub repository {repo_id} holds no {CONFIG_FILE}: not a linfdist model")
    return folder


def load_model(name_or_path: str | None = None):
    """The model a MODEL argument names (zoo name or alias, checkpoint folder, Hub repo id), in eval mode;
    a zoo model's files are checked against the sha256 its registry entry pins first."""
    from linfdist.models import load_pretrained

    return load_pretrained(resolve_folder(name_or_path))


def create_model(name: str, pretrained: bool = True, **config):
    """timm's convention: the zoo model ``name`` with its weights, or (``pretrained=False``) the same
    architecture freshly initialised; ``config`` overrides config fields (e.g. ``p=8.0`` to fine-tune)."""
    import json

    from linfdist.models import ARCHITECTURES, load_pretrained

    folder = resolve_folder(name)
    if pretrained and not config:
        return load_pretrained(folder)
    data = {**json.loads((folder / CONFIG_FILE).read_text()), **config}
    cls = ARCHITECTURES[data["architecture"]]
    model = cls(cls.config_class.from_dict(data))
    if pretrained:
        model.load_state_dict(load_pretrained(folder).state_dict())
    return model.eval()
