"""Atomic writes: readers see the old file or the new one, whole; a failed write leaves no debris."""

import pytest

from linfdist.files import atomic_path, sha256_file


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path, durable):
    target = tmp_path / "registry.json"
    target.write_text("old")
    with atomic_path(target, durable=durable) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block succeeds
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target, durable=durable) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
