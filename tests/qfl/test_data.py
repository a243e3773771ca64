"""Dataset loaders: lookup order, download + checksum, file formats, shared copies."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

import qfl.data.download as dl
from qfl.data import (
    ChecksumMismatch,
    DatasetNotFound,
    TensorDataset,
    cache_dir,
    data_root,
    load_fashion_mnist,
    load_flowers102,
    load_intel_scenes,
    load_unimib_shar,
)
from qfl.data import flowers as flowers_mod
from qfl.data.download import RemoteFile, fetch
from qfl.data.fashion_mnist import IdxFormatError, read_idx
from qfl.data.images import center_square, load_image, to_tensor
from qfl.data.unimib import UnimibFormatError
from qkd.errors import ParameterError, UnknownNameError


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No QFL_DATA_DIR; the user cache in a temporary folder. Returns the cache folder."""
    monkeypatch.delenv("QFL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "qfl"


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace the URL opener: the URL's last path part (query dropped) picks the bytes."""
    requested: list[str] = []

    def opener(url: str, timeout: float = 0.0) -> io.BytesIO:
        requested.append(url)
        name = url.split("?")[0].rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError(f"no route to {url}")
        return io.BytesIO(files[name])

    monkeypatch.setattr(dl, "_urlopen", opener)
    return requested


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, {})


# --------------------------------------------------------------------------- TensorDataset


def test_tensor_dataset_subset_and_validation() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    groups = torch.tensor([5, 5, 6, 6, 7, 7])
    ds = TensorDataset(x, y, ("a", "b", "c"), "toy", groups)
    sub = ds.subset(np.array([4, 0]))
    assert len(ds) == 6 and ds.num_classes == 3 and len(sub) == 2
    assert sub.x.tolist() == [[8.0, 9.0], [0.0, 1.0]]
    assert sub.y.tolist() == [1, 0] and sub.groups is not None and sub.groups.tolist() == [7, 5]
    assert ds.subset([]).x.shape == (0, 2)
    with pytest.raises(ParameterError, match=r"indices: must be < 6"):
        ds.subset([6])
    with pytest.raises(ParameterError, match=r"toy.x.shape: must be \[6, \.\.\.\]"):
        TensorDataset(x[:5], y, ("a", "b", "c"), "toy")
    with pytest.raises(ParameterError, match=r"toy.x.dtype: must be torch.float32"):
        TensorDataset(x.double(), y, ("a", "b", "c"), "toy")
    with pytest.raises(ParameterError, match=r"toy.y: must be in \[0, 1\]"):
        TensorDataset(x, y, ("a", "b"), "toy")
    with pytest.raises(ParameterError, match=r"toy.groups.shape"):
        TensorDataset(x, y, ("a", "b", "c"), "toy", groups[:3])


# --------------------------------------------------------------------------- lookup order


def test_data_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: Path) -> None:
    assert data_root("fashion-mnist", tmp_path / "x") == tmp_path / "x"
    assert cache_dir() == no_env
    assert data_root("flowers102") == no_env / "flowers102"
    env = tmp_path / "env"
    (env / "flowers102-mini").mkdir(parents=True)
    monkeypatch.setenv("QFL_DATA_DIR", str(env))
    assert data_root("flowers102") == env / "flowers102-mini"
    (env / "flowers102").mkdir()
    assert data_root("flowers102") == env / "flowers102"
    # a folder missing under QFL_DATA_DIR falls back to the cache
    assert data_root("unimib-shar") == no_env / "unimib-shar"
    # the explicit root wins over the environment
    assert data_root("flowers102", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "qfl"
    with pytest.raises(UnknownNameError, match=r"dataset: must be one of .*'fashion-mnist'"):
        data_root("mnist")


# --------------------------------------------------------------------------- fetch


def test_fetch_file_url_verifies_md5(tmp_path: Path) -> None:
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    payload = b"quantum keys " * 1000
    src.write_bytes(payload)
    out = tmp_path / "out"
    bad_url = (tmp_path / "nowhere" / "blob.bin").as_uri()
    got = fetch(RemoteFile("blob.bin", (bad_url, src.as_uri()), _md5(payload)), out)
    assert got == out / "blob.bin" and got.read_bytes() == payload
    with pytest.raises(ChecksumMismatch, match=r"blob2.bin from file:.*md5 [0-9a-f]{32} differs"):
        fetch(RemoteFile("blob2.bin", (src.as_uri(),), "0" * 32), out)
    assert sorted(p.name for p in out.iterdir()) == ["blob.bin"]  # nothing left behind
    with pytest.raises(DatasetNotFound, match=r"could not download gone.bin into .*nowhere"):
        fetch(RemoteFile("gone.bin", (bad_url.replace("blob", "gone"),), None), out)


# --------------------------------------------------------------------------- Fashion-MNIST


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def test_read_idx_round_trip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(IdxFormatError, match="not an IDX file of unsigned bytes"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(IdxFormatError, match=r"header says \(2, 3, 4\) = 24 bytes, file has 23"):
        read_idx(tmp_path / "short.idx")


def test_fashion_mnist_shared(fashion_mnist_dir: Path) -> None:
    train, test = load_fashion_mnist(fashion_mnist_dir, download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.y.bincount().tolist() == [6000] * 10
    assert test.y.bincount().tolist() == [1000] * 10
    assert test.y[:5].tolist() == [9, 2, 1, 1, 6]  # first labels of the official test set
    assert abs(float(train.x.mean())) < 1e-3 and abs(float(train.x.std()) - 1.0) < 1e-3
    assert float(train.x.min()) == pytest.approx(-0.2860 / 0.3530, abs=1e-5)
    assert train.classes[0] == "T-shirt/top" and train.num_classes == 10
    again, _ = load_fashion_mnist(fashion_mnist_dir)
    assert again is train  # cached in-process


def test_fashion_mnist_env_lookup(
    monkeypatch: pytest.MonkeyPatch, fashion_mnist_dir: Path, no_env: Path
) -> None:
    monkeypatch.setenv("QFL_DATA_DIR", str(fashion_mnist_dir.parent))
    _offline(monkeypatch)  # must not need the network
    train, _ = load_fashion_mnist()
    assert len(train) == 60000


def test_fashion_mnist_download_into_cache(
    monkeypatch: pytest.MonkeyPatch, fashion_mnist_dir: Path, no_env: Path
) -> None:
    files = {p.name: p.read_bytes() for p in fashion_mnist_dir.glob("*-ubyte.gz")}
    requested = _serve(monkeypatch, files)
    train, test = load_fashion_mnist()
    assert sorted(p.name for p in (no_env / "fashion-mnist").iterdir()) == sorted(files)
    assert requested[0].startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    ref_train, ref_test = load_fashion_mnist(fashion_mnist_dir)
    assert torch.equal(test.y, ref_test.y) and torch.equal(train.x[:50], ref_train.x[:50])
    # second call: files are cached on disk, no new request
    n = len(requested)
    load_fashion_mnist()
    assert len(requested) == n


def test_fashion_mnist_wrong_checksum_deletes(
    monkeypatch: pytest.MonkeyPatch, no_env: Path
) -> None:
    _serve(monkeypatch, {"train-images-idx3-ubyte.gz": b"not the real file"})
    with pytest.raises(ChecksumMismatch, match=r"md5 .* differs from the published 8d4fb7e6"):
        load_fashion_mnist()
    folder = no_env / "fashion-mnist"
    assert not any(folder.iterdir())


def test_fashion_mnist_offline_message(monkeypatch: pytest.MonkeyPatch, no_env: Path) -> None:
    _offline(monkeypatch)
    with pytest.raises(DatasetNotFound) as info:
        load_fashion_mnist()
    msg = str(info.value)
    assert "fashion-mnist not found in" in msg and str(no_env / "fashion-mnist") in msg
    assert "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in msg
    assert "$QFL_DATA_DIR/fashion-mnist" in msg and "no route to" in msg
    with pytest.raises(DatasetNotFound, match=r"downloading is disabled \(download=False\)"):
        load_fashion_mnist(no_env / "elsewhere", download=False)


# --------------------------------------------------------------------------- UniMiB-SHAR


def _write_unimib(folder: Path, n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    steps = np.arange(151)
    # x axis = 10 + t/100, y axis = -5 - t/100, z axis = 9.8 + noise: recognisable columns
    data = np.concatenate(
        [
            10 + steps[None, :] / 100 + rng.normal(0, 1, (n, 1)),
            -5 - steps[None, :] / 100 + rng.normal(0, 1, (n, 1)),
            9.8 + rng.normal(0, 0.5, (n, 151)),
        ],
        axis=1,
    )
    labels = np.stack(
        [rng.integers(1, 18, n), rng.integers(1, 31, n), rng.integers(1, 3, n)], axis=1
    ).astype(np.float64)
    scipy.io.savemat(folder / "acc_data.mat", {"acc_data": data})
    scipy.io.savemat(folder / "acc_labels.mat", {"acc_labels": labels})
    return data, labels


def test_unimib_round_trip(tmp_path: Path) -> None:
    data, labels = _write_unimib(tmp_path / "u")
    ds = load_unimib_shar(tmp_path / "u", standardize=False, download=False)
    assert ds.x.shape == (40, 151, 3) and ds.x.dtype == torch.float32
    np.testing.assert_allclose(ds.x[:, :, 0].numpy(), data[:, :151], rtol=1e-6)
    np.testing.assert_allclose(ds.x[:, :, 1].numpy(), data[:, 151:302], rtol=1e-6)
    np.testing.assert_allclose(ds.x[:, :, 2].numpy(), data[:, 302:], rtol=1e-6)
    assert ds.y.tolist() == (labels[:, 0] - 1).astype(int).tolist()
    assert ds.groups is not None and ds.groups.tolist() == labels[:, 1].astype(int).tolist()
    assert ds.num_classes == 17 and ds.classes[2] == "Walking"
    std = load_unimib_shar(tmp_path / "u", download=False)
    flat = std.x.reshape(-1, 3).double()
    np.testing.assert_allclose(flat.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0, correction=0).numpy(), 1.0, atol=1e-5)
    assert std.subset([3]).groups is not None


def test_unimib_release_layout_and_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: Path
) -> None:
    _write_unimib(tmp_path / "rel" / "UniMiB-SHAR" / "data", n=12)
    assert len(load_unimib_shar(tmp_path / "rel", download=False)) == 12
    bad = tmp_path / "bad"
    bad.mkdir()
    scipy.io.savemat(bad / "acc_data.mat", {"acc_data": np.zeros((4, 100))})
    scipy.io.savemat(bad / "acc_labels.mat", {"acc_labels": np.ones((4, 3))})
    with pytest.raises(UnimibFormatError, match=r"acc_data has shape \(4, 100\), expected N x 3T"):
        load_unimib_shar(bad, download=False)
    scipy.io.savemat(bad / "acc_data.mat", {"data": np.zeros((4, 453))})
    with pytest.raises(UnimibFormatError, match=r"no variable 'acc_data' \(found \['data'\]\)"):
        load_unimib_shar(bad, download=False)
    _offline(monkeypatch)
    with pytest.raises(
        DatasetNotFound, match=r"unimib-shar not found .*Put acc_data.mat, acc_labels.mat"
    ):
        load_unimib_shar()


def test_unimib_download_unpacks_archive(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: Path
) -> None:
    data, _ = _write_unimib(tmp_path / "src" / "UniMiB-SHAR" / "data", n=8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in (tmp_path / "src").rglob("*.mat"):
            zf.write(p, p.relative_to(tmp_path / "src").as_posix())
    requested = _serve(monkeypatch, {"UniMiB-SHAR.zip": buf.getvalue()})
    ds = load_unimib_shar(standardize=False)
    assert requested == ["https://www.dropbox.com/s/x2fpfqj0bpf8ep6/UniMiB-SHAR.zip?dl=1"]
    np.testing.assert_allclose(ds.x[:, :, 0].numpy(), data[:, :151], rtol=1e-6)
    assert not (no_env / "unimib-shar" / "UniMiB-SHAR.zip").exists()


# --------------------------------------------------------------------------- images


def test_center_crop_and_resize(tmp_path: Path) -> None:
    assert center_square(500, 300) == (100, 0, 400, 300)
    assert center_square(300, 501) == (0, 100, 300, 400)
    img = np.zeros((40, 80, 3), dtype=np.uint8)
    img[:, :20] = (0, 0, 255)  # blue margins, cropped away
    img[:, 60:] = (0, 0, 255)
    img[:, 20:60] = (255, 0, 0)  # red centre square 40 x 40
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 255).all() and (out[..., 2] == 0).all()
    raw = to_tensor(out[None], normalize=False)
    assert raw.shape == (1, 3, 8, 8) and float(raw[0, 0].min()) == 1.0
    norm = to_tensor(out[None])
    assert float(norm[0, 0, 0, 0]) == pytest.approx((1.0 - 0.485) / 0.229, rel=1e-5)
    with pytest.raises(ParameterError, match="image_size: must be a positive integer, got 0"):
        load_image(tmp_path / "a.png", 0)


# --------------------------------------------------------------------------- Flowers102


def test_flowers_mini(monkeypatch: pytest.MonkeyPatch, flowers_dir: Path, no_env: Path) -> None:
    train, test = load_flowers102(flowers_dir, image_size=32, download=False)
    monkeypatch.setenv("QFL_DATA_DIR", str(flowers_dir.parent))
    _offline(monkeypatch)
    via_env, _ = load_flowers102(image_size=32)  # finds flowers102(-mini) by itself
    torch.testing.assert_close(via_env.x, train.x)
    present = {p.name for p in (flowers_dir / "jpg").glob("image_*.jpg")}
    assert len(train) + len(test) == len(present)
    assert train.x.shape[1:] == (3, 32, 32) and train.num_classes == 102
    manifest_path = flowers_dir / "manifest.csv"
    if manifest_path.exists():
        with open(manifest_path) as fh:
            rows = list(csv.DictReader(fh))
        expected_train = sorted(
            (r["file"], int(r["label_1based"]) - 1)
            for r in rows
            if r["official_split"] in ("trnid", "valid")
        )
        assert len(train) == len(expected_train)
        assert train.y.tolist() == [label for _, label in expected_train]
        n_test = sum(r["official_split"] == "tstid" for r in rows)
        assert len(test) == n_test
    assert int(train.y.min()) >= 0 and int(train.y.max()) <= 101
    raw, _ = load_flowers102(flowers_dir, image_size=32, normalize=False, download=False)
    assert 0.0 <= float(raw.x.min()) and float(raw.x.max()) <= 1.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(train.x, (raw.x - mean) / std)


def test_flowers_download_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: Path
) -> None:
    # A 3-image release: images 1 and 3 train (trnid, valid), image 2 test; image 4 listed
    # in setid.mat but absent from the archive.
    src = tmp_path / "src"
    (src / "jpg").mkdir(parents=True)
    for i, colour in ((1, (255, 0, 0)), (2, (0, 255, 0)), (3, (0, 0, 255))):
        Image.new("RGB", (30, 20), colour).save(src / "jpg" / f"image_{i:05d}.jpg")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        tf.add(src / "jpg", arcname="jpg")
    scipy.io.savemat(src / "imagelabels.mat", {"labels": np.array([[5, 7, 102, 1]], np.uint8)})
    scipy.io.savemat(
        src / "setid.mat",
        {"trnid": np.array([[1, 4]]), "valid": np.array([[3]]), "tstid": np.array([[2]])},
    )
    blobs = {
        "102flowers.tgz": tgz.getvalue(),
        "imagelabels.mat": (src / "imagelabels.mat").read_bytes(),
        "setid.mat": (src / "setid.mat").read_bytes(),
    }
    fake = tuple(
        RemoteFile(name, ("https://example.invalid/" + name,), _md5(blob))
        for name, blob in blobs.items()
    )
    monkeypatch.setattr(flowers_mod, "FILES", fake)
    _serve(monkeypatch, blobs)
    train, test = load_flowers102(image_size=4, normalize=False)
    assert train.y.tolist() == [4, 101] and test.y.tolist() == [6]
    assert float(train.x[0, 0].mean()) > 0.9 and float(train.x[1, 2].mean()) > 0.9
    assert not (no_env / "flowers102" / "102flowers.tgz").exists()


# --------------------------------------------------------------------------- Intel scenes


def test_intel_mini(intel_dir: Path) -> None:
    train, test = load_intel_scenes(intel_dir, image_size=32)
    assert train.classes == ("buildings", "forest", "glacier", "mountain", "sea", "street")
    n_train = [
        len(list((intel_dir / "seg_train" / "seg_train" / c).glob("*.jpg"))) for c in train.classes
    ]
    assert train.y.bincount(minlength=6).tolist() == n_train
    assert train.x.shape == (sum(n_train), 3, 32, 32) and len(test) > 0
    assert test.classes == train.classes


def test_intel_flat_layout_and_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: Path
) -> None:
    for split, n in (("seg_train", 2), ("seg_test", 1)):
        for cls in ("sea", "forest"):
            (tmp_path / "k" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (150, 150), (0, 90, 200)).save(
                    tmp_path / "k" / split / cls / f"{i}.jpg"
                )
    train, test = load_intel_scenes(tmp_path / "k", image_size=8)
    assert train.classes == ("forest", "sea") and train.y.tolist() == [0, 0, 1, 1]
    assert test.y.tolist() == [0, 1]
    with pytest.raises(DatasetNotFound, match=r"intel not found .*cannot be downloaded.*kaggle"):
        load_intel_scenes()
    with pytest.raises(ParameterError, match="image_size"):
        load_intel_scenes(tmp_path / "k", image_size=-3)
