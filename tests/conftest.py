import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # No GPU: the Triton kernels run on CPU tensors through Triton's interpreter. Must be
    # set before linfdist's Triton modules are imported (the jit decorator reads it).
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch):
    """Deterministic tests that never see the developer's LINFDIST_DATA."""
    torch.manual_seed(0)
    monkeypatch.delenv("LINFDIST_DATA", raising=False)


@pytest.fixture
def shared_data() -> Path:
    """The project's shared datasets (../shared/data); tests needing them skip without it."""
    if not (SHARED_DATA / "mnist" / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA
