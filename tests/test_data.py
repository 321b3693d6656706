"""Local dataset loading: layouts, bundled MNIST test set, one-line errors on bad files."""

import gzip
import hashlib
import pickle

import numpy as np
import pytest

from linfdist.data import DatasetError, bundled_dir, load_dataset, read_idx


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_bundled_mnist_test_set_is_the_official_one():
    images, labels = load_dataset("mnist", "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    digest = hashlib.md5((bundled_dir() / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert digest == "9fb629c4189551a2d022fa330f9573f3"


def test_other_datasets_need_a_data_dir():
    with pytest.raises(DatasetError, match="not bundled"):
        load_dataset("mnist", "train")
    with pytest.raises(DatasetError, match="not bundled"):
        load_dataset("cifar10", "test")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_shared_idx_datasets(shared_data, name):
    x, y = load_dataset(name, "train", shared_data)
    assert x.shape == (60000, 1, 28, 28) and y.shape == (60000,) and set(np.unique(y)) == set(range(10))


def test_shared_cifar10(shared_data, monkeypatch):
    monkeypatch.setenv("LINFDIST_DATA", str(shared_data))
    x, y = load_dataset("cifar10", "test")
    assert x.shape == (10000, 3, 32, 32) and np.bincount(y).tolist() == [1000] * 10
    # Test image 0 begins R-row 158, 159, 165 (the published test_batch data[0]).
    assert x[0, 0, 0, :3].tolist() == [158, 159, 165]


def test_torchvision_layouts(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.random.randint(0, 256, (10000, 28, 28), dtype=np.uint8)
    labels = np.arange(10000) % 10
    write_idx(raw / "t10k-images-idx3-ubyte", images, compress=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels, compress=False)
    x, y = load_dataset("fashion-mnist", "test", tmp_path)
    assert np.array_equal(x[:, 0], images) and np.array_equal(y, labels)

    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    data = np.random.randint(0, 256, (10000, 3072), dtype=np.uint8)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": list(np.arange(10000) % 10)}, f)
    x, y = load_dataset("cifar10", "test", tmp_path)
    assert np.array_equal(x.reshape(10000, -1), data) and y[:3].tolist() == [0, 1, 2]


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz not found"):
        load_dataset("mnist", "test", tmp_path)
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28)))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz not found"):
        load_dataset("mnist", "test", tmp_path)


def test_corrupt_and_wrong_files_are_refused(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"definitely not gzip")
    with pytest.raises(DatasetError, match=r"x.gz: cannot read"):
        read_idx(bad, 3)
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + bytes(12)))
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(bad, 3)
    write_idx(bad, np.zeros(5))
    with pytest.raises(DatasetError, match="3 dimension"):
        read_idx(bad, 3)
    bad.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(7)))
    with pytest.raises(DatasetError, match="holds 7 bytes"):
        read_idx(bad, 1)
    (tmp_path / "mnist").mkdir()
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28)))
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(10))
    with pytest.raises(DatasetError, match="expected 10000 images"):
        load_dataset("mnist", "test", tmp_path)


def test_bad_names_and_directories(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("mnist", "validation")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mnist", "test", tmp_path / "nowhere")
    monkeypatch.setenv("LINFDIST_DATA", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match="LINFDIST_DATA"):
        load_dataset("mnist", "test")


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    """The python batches are pickles: only arrays may come out of them, never a call."""
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", tmp_path)
