"""Local dataset files are checked: published checksums, folder lists, damaged files."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from PIL import Image

import qfl.data.download as dl
from qfl.data import (
    ChecksumMismatch,
    DatasetCorrupt,
    load_fashion_mnist,
    load_intel_scenes,
    load_unimib_shar,
)
from qfl.data import fashion_mnist as fm
from qfl.data.download import RemoteFile, verify_files
from qfl.data.fashion_mnist import IdxFormatError, read_idx
from qfl.data.images import load_image
from qfl.data.unimib import UnimibFormatError

LABELS = "train-labels-idx1-ubyte.gz"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The user cache in a temporary folder; returns where the verification cache goes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "qfl" / "verified.json"


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the files hashed: one entry (the file name) per call of ``file_digest``."""
    calls: list[str] = []
    real = dl.file_digest

    def counting(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
        calls.append(Path(path).name)
        return real(path, algorithm)

    monkeypatch.setattr(dl, "file_digest", counting)
    return calls


def _fmnist_copy(src: Path, dst: Path, labels: Callable[[bytes], bytes] | None = None) -> Path:
    """``dst/fashion-mnist`` with the images linked to ``src`` and the train labels
    rewritten as ``labels(raw .gz bytes)`` (copied unchanged when ``None``)."""
    folder = dst / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in fm._MD5:
        if name != LABELS:
            (folder / name).symlink_to(src / name)
    raw = (src / LABELS).read_bytes()
    (folder / LABELS).write_bytes(labels(raw) if labels else raw)
    return folder


def _shift_labels(raw: bytes) -> bytes:
    idx = bytearray(gzip.decompress(raw))
    idx[8:] = bytes((b + 1) % 10 for b in idx[8:])  # header: magic + one dimension
    return gzip.compress(bytes(idx))


def _truncate(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _corrupt(raw: bytes) -> bytes:
    return raw[:10] + bytes(b ^ 0x5A for b in raw[10:200]) + raw[200:]


# --------------------------------------------------------------------------- Fashion-MNIST


def test_shifted_labels_in_data_dir_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fashion_mnist_dir: Path, cache: Path
) -> None:
    folder = _fmnist_copy(fashion_mnist_dir, tmp_path / "data", _shift_labels)
    assert read_idx(folder / LABELS)[:3].tolist() == [0, 1, 1]  # a valid, shifted file
    monkeypatch.setenv("QFL_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ChecksumMismatch) as info:
        load_fashion_mnist()
    msg = str(info.value)
    assert str(folder / LABELS) in msg and "published md5" in msg
    assert "expected 25c81989df18..., got " in msg
    assert "delete" in msg and "intact copy" in msg
    assert (folder / LABELS).exists()  # a local file is reported, never deleted
    with pytest.raises(ChecksumMismatch, match=LABELS):  # explicit root: checked as well
        load_fashion_mnist(folder, download=False)


@pytest.mark.parametrize(("damage", "what"), [(_truncate, "truncated"), (_corrupt, "corrupt")])
def test_damaged_gz_gives_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fashion_mnist_dir: Path,
    cache: Path,
    damage: Callable[[bytes], bytes],
    what: str,
) -> None:
    folder = _fmnist_copy(fashion_mnist_dir, tmp_path, damage)
    with pytest.raises(ChecksumMismatch, match=rf"{folder / LABELS} does not match"):
        load_fashion_mnist(folder, download=False)
    # Without a checksum to compare with, the reader itself reports the damage.
    expected = {"truncated": "is truncated", "corrupt": "is not a valid gzip file"}[what]
    with pytest.raises(IdxFormatError, match=rf"{folder / LABELS} {expected}.*delete") as info:
        read_idx(folder / LABELS)
    assert isinstance(info.value, DatasetCorrupt)
    unchecked = tuple(RemoteFile(f.filename, f.urls, None) for f in fm.FILES)
    monkeypatch.setattr(fm, "FILES", unchecked)
    with pytest.raises(DatasetCorrupt, match=expected):
        load_fashion_mnist(folder, download=False)


def test_simulate_with_damaged_data_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fashion_mnist_dir: Path,
    cache: Path,
    write_scenario: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qfl.cli import main

    folder = _fmnist_copy(fashion_mnist_dir, tmp_path / "data", _truncate)
    monkeypatch.setenv("QFL_DATA_DIR", str(tmp_path / "data"))
    scenario = write_scenario()
    status = main(["simulate", str(scenario), "--quick", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qfl: error: ")
    assert str(folder / LABELS) in lines[0] and "interrupted" not in err


# --------------------------------------------------------------------------- the cache


def _toy_folder(tmp_path: Path) -> tuple[Path, list[RemoteFile]]:
    """``a.bin`` with a 'published' md5 and ``b.bin`` listed in the folder's SHA256SUMS."""
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"alpha" * 1000)
    (folder / "b.bin").write_bytes(b"beta" * 1000)
    sha = hashlib.sha256(b"beta" * 1000).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{sha}  ./b.bin\nnot a checksum line\n")
    md5 = hashlib.md5(b"alpha" * 1000, usedforsecurity=False).hexdigest()
    return folder, [RemoteFile("a.bin", (), md5)]


def test_verification_is_cached_until_a_file_changes(
    tmp_path: Path, cache: Path, hash_calls: list[str]
) -> None:
    folder, remotes = _toy_folder(tmp_path)
    verify_files("toy", folder, remotes)
    assert sorted(hash_calls) == ["a.bin", "b.bin"] and cache.is_file()
    verify_files("toy", folder, remotes)
    assert len(hash_calls) == 2  # nothing hashed again
    st = (folder / "a.bin").stat()
    os.utime(folder / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    verify_files("toy", folder, remotes)
    assert hash_calls[2:] == ["a.bin"]  # new mtime: verified again, b.bin still cached
    with open(folder / "b.bin", "ab") as fh:  # new size (and content)
        fh.write(b"!")
    with pytest.raises(ChecksumMismatch, match=r"b\.bin does not match the sha256 listed in"):
        verify_files("toy", folder, remotes)
    assert hash_calls[3:] == ["b.bin"]


def test_fashion_mnist_second_load_skips_hashing(
    tmp_path: Path, fashion_mnist_dir: Path, cache: Path, hash_calls: list[str]
) -> None:
    folder = _fmnist_copy(fashion_mnist_dir, tmp_path)
    load_fashion_mnist(folder, download=False)
    assert sorted(hash_calls) == sorted(fm._MD5)
    load_fashion_mnist(folder, download=False)
    assert len(hash_calls) == 4


def test_unwritable_cache_still_verifies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hash_calls: list[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # cache_dir() cannot be created
    folder, remotes = _toy_folder(tmp_path)
    verify_files("toy", folder, remotes)
    verify_files("toy", folder, remotes)
    assert len(hash_calls) == 4  # hashed each time, no error
    (folder / "a.bin").write_bytes(b"other")
    with pytest.raises(ChecksumMismatch, match=r"a\.bin does not match its published md5"):
        verify_files("toy", folder, remotes)


def test_unreadable_cache_file_is_ignored(tmp_path: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    folder, remotes = _toy_folder(tmp_path)
    verify_files("toy", folder, remotes)
    assert '"version": 1' in cache.read_text()


# --------------------------------------------------------------------------- folder lists


def test_folder_checksum_list(tmp_path: Path, cache: Path) -> None:
    folder, remotes = _toy_folder(tmp_path)
    (folder / "b.bin").unlink()
    with pytest.raises(DatasetCorrupt, match=r"b\.bin is listed in .*SHA256SUMS but missing"):
        verify_files("toy", folder, remotes)


def _intel_folder(root: Path) -> Path:
    for split in ("seg_train", "seg_test"):
        for cls, colour in (("forest", (0, 120, 0)), ("sea", (0, 90, 200))):
            d = root / split / split / cls
            d.mkdir(parents=True)
            Image.new("RGB", (32, 32), colour).save(d / "0.jpg")
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(root).as_posix()}"
        for p in sorted(root.rglob("*.jpg"))
    ]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root


def test_intel_folder_with_its_own_list(tmp_path: Path, cache: Path) -> None:
    root = _intel_folder(tmp_path / "intel")
    train, _ = load_intel_scenes(root, image_size=8)
    assert train.y.tolist() == [0, 1]
    Image.new("RGB", (32, 32), (255, 255, 255)).save(root / "seg_train/seg_train/sea/0.jpg")
    with pytest.raises(ChecksumMismatch, match=r"sea/0\.jpg does not match the sha256") as info:
        load_intel_scenes(root, image_size=8)
    assert "replace" in str(info.value) and "delete" not in str(info.value)


def test_corrupt_image_and_mat_files(tmp_path: Path, cache: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.new("RGB", (40, 40), (10, 20, 30)).save(good)
    raw = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 3])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    for name in ("cut.jpg", "junk.jpg"):
        with pytest.raises(DatasetCorrupt, match=rf"{tmp_path / name} cannot be decoded"):
            load_image(tmp_path / name, 8)
    folder = tmp_path / "unimib"
    folder.mkdir()
    data: dict[str, Any] = {"acc_data": np.zeros((4, 453))}
    scipy.io.savemat(folder / "acc_data.mat", data)
    scipy.io.savemat(folder / "acc_labels.mat", {"acc_labels": np.ones((4, 3))})
    whole = (folder / "acc_data.mat").read_bytes()
    (folder / "acc_data.mat").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnimibFormatError, match=r"acc_data\.mat cannot be read as a MATLAB"):
        load_unimib_shar(folder, download=False)
