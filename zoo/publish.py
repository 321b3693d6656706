"""Publish a checkpoint folder to the Hugging Face Hub and record the upload in the registry.

``--dry-run`` stages and checks everything and reports the exact upload without calling
the Hub. A real publish creates the repository if needed, uploads config, weights, card
and training curves (when present) in one commit, and writes that commit's id into the registry as the entry's pinned
revision — the only way a revision ever gets there.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from linfdist import __version__
from linfdist.curves import CURVES_FILE
from linfdist.errors import LinfdistError
from linfdist.files import CARD_FILE, sha256_file
from linfdist.zoo.card import METRICS
from linfdist.zoo.registry import ZooEntry, load_registry, record_entry, registry_path


def stage(folder: Path) -> tuple[dict, dict]:
    """(sha256 per file to upload, registry fields) for a checked checkpoint folder with its card."""
    from huggingface_hub import ModelCard

    from linfdist.models import CONFIG_FILE, INDEX_FILE, load_pretrained, weight_files

    folder = Path(folder)
    model = load_pretrained(folder)  # config and weights must agree before anything is uploaded
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"{card_path} not found: publish needs the model card (write_model_card)")
    claims = {r.metric_type: r for r in ModelCard.load(card_path).data.eval_results or []}
    if not {"clean_accuracy", "certified_accuracy"} <= set(claims):
        raise LinfdistError(f"{card_path} states no clean and certified accuracy in its model-index")
    names = [CONFIG_FILE, CARD_FILE, *(p.name for p in weight_files(folder))]
    names += [extra for extra in (INDEX_FILE, CURVES_FILE) if (folder / extra).is_file()]
    config = model.config
    args = claims["certified_accuracy"].metric_args or {}
    fields = {
        "dataset": config.dataset, "eps": config.eps,
        "architecture": f"{config.architecture}, {config.depth} layers x {config.width}, p = {config.p:g}",
        **{metric: claims[metric].metric_value if metric in claims else None for metric in METRICS},
        "certifier": args.get("certifier", "unknown"), "test_images": args.get("test_images"), "license": "mit",
    }
    return {name: sha256_file(folder / name) for name in sorted(names)}, fields


def published_entry(registry: Path, name: str, repo_id: str, files: dict, fields: dict) -> ZooEntry:
    """The registry entry a publish of ``files`` as ``name`` records (revision still unset). A
    bundled model keeps its bundled copy and aliases only when the upload is exactly that copy."""
    entry = ZooEntry(name=name, repo_id=repo_id, revision=None, files=files, **fields)
    known = next((e for e in load_registry(registry) if e.name == name), None) if registry.is_file() else None
    if known is None or not known.bundled:
        return replace(entry, aliases=known.aliases if known else [])
    if known.files != files:
        raise LinfdistError(f"{name} is bundled with different files; publish these under a new name "
                         f"(or bundle them again first)")
    return replace(entry, bundled=known.bundled, aliases=known.aliases)


def publish(folder, repo_id: str, name: str, dry_run: bool = False, api=None, registry: Path | None = None) -> dict:
    """Upload ``folder`` to ``repo_id`` and pin it in the registry as ``name``; returns the plan/result."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LinfdistError(f"--repo-id must look like owner/name, got {repo_id!r}")
    files, fields = stage(Path(folder))
    registry = Path(registry or registry_path())
    entry = published_entry(registry, name, repo_id, files, fields)
    message = f"Upload {name} (linfdist {__version__})"
    plan = {"name": name, "repo_id": repo_id, "files": files, "commit_message": message, "revision": None}
    if dry_run:
        return plan
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        for file in files:
            shutil.copy2(Path(folder) / file, Path(staging) / file)
        commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=message,
                                   repo_type="model", revision="main")
    plan["revision"] = commit.oid
    record_entry(registry, replace(entry, revision=commit.oid))
    return plan

