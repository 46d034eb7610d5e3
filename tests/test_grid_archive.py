"""tinysml/grid_archive.py and ``--archive`` / ``--resume-from``: a grid's runs packed on one machine
resume on another; caches stay behind; a hostile or broken archive is refused before anything is
written; what is already on this machine is kept."""
import io
import json
import os
import tarfile

import pytest

from tinysml import compare, grid_archive


def _tree(root):
    files = {"seed0/teacher/results.json": b'{"a": 1}', "seed0/teacher/teacher.npz": b"npz",
             "seed0/student-alone/final.train.npz": b"ckpt", "seed0/teacher/teacher-outputs/k/logits.npy": b"cache",
             "seed0/teacher/.tmp-x/half": b"partial", "summary.json": b"{}"}
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return files


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for n in names:
            p = os.path.join(folder, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_pack_then_unpack_carries_the_runs_but_not_the_caches(tmp_path):
    files = _tree(tmp_path / "a")
    assert grid_archive.pack(str(tmp_path / "a"), str(tmp_path / "g.tar.gz")) == 4
    counts = grid_archive.unpack(str(tmp_path / "g.tar.gz"), str(tmp_path / "b"))
    assert counts == {"added": 4, "kept": 0}
    expected = {k: v for k, v in files.items() if "teacher-outputs" not in k and ".tmp" not in k}
    assert _files(tmp_path / "b") == expected
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]      # written atomically


def test_files_already_here_are_kept(tmp_path):
    _tree(tmp_path / "a")
    grid_archive.pack(str(tmp_path / "a"), str(tmp_path / "g.tar.gz"))
    os.makedirs(tmp_path / "b")
    (tmp_path / "b" / "summary.json").write_bytes(b"mine")
    counts = grid_archive.unpack(str(tmp_path / "g.tar.gz"), str(tmp_path / "b"))
    assert counts == {"added": 3, "kept": 1} and (tmp_path / "b" / "summary.json").read_bytes() == b"mine"


def _archive_with(tmp_path, member: tarfile.TarInfo, data=b"x"):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("seed0/fine.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    return str(path)


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "hardlink", "device"])
def test_a_hostile_archive_is_refused_before_anything_is_written(tmp_path, kind):
    m = tarfile.TarInfo({"parent": "../escape.json", "absolute": "/tmp/escape.json"}.get(kind, "seed0/link"))
    if kind == "symlink":
        m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        m.type, m.linkname = tarfile.LNKTYPE, "seed0/fine.json"
    elif kind == "device":
        m.type = tarfile.CHRTYPE
    archive = _archive_with(tmp_path, m)
    with pytest.raises(ValueError, match="refusing to unpack any of it"):
        grid_archive.unpack(archive, str(tmp_path / "out"))
    assert not (tmp_path / "out" / "seed0" / "fine.json").exists()
    assert not (tmp_path / "escape.json").exists()


def test_a_broken_or_missing_archive_says_so(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar file at all")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        grid_archive.unpack(str(tmp_path / "junk.tar.gz"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError):
        grid_archive.unpack(str(tmp_path / "none.tar.gz"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError):
        grid_archive.pack(str(tmp_path / "no-such-grid"), str(tmp_path / "g.tar.gz"))


def test_a_grid_packed_on_one_machine_resumes_on_another(tmp_path):
    """``compare --archive`` packs the grid; ``compare --resume-from`` into a fresh folder reuses
    every finished run (the same table), then packs nothing it was not asked to."""
    tiny = ["--dataset", "basicmotions", "--seeds", "0", "--teacher-epochs", "1", "--student-epochs", "1",
            "--batch-size", "16", "--variants", "KD (Hinton)", "--workers", "1"]
    compare.main([*tiny, "--out", str(tmp_path / "a"), "--doc", str(tmp_path / "a.md"),
                  "--archive", str(tmp_path / "grid.tar.gz")])
    names = tarfile.open(tmp_path / "grid.tar.gz").getnames()
    assert "seed0/kd--hinton/results.json" in names and not any("teacher-outputs" in n for n in names)
    compare.main([*tiny, "--out", str(tmp_path / "b"), "--doc", str(tmp_path / "b.md"),
                  "--resume-from", str(tmp_path / "grid.tar.gz")])
    assert json.load(open(tmp_path / "a" / "summary.json")) == json.load(open(tmp_path / "b" / "summary.json"))
    for run in ("seed0/teacher/teacher.npz", "seed0/kd--hinton/student.npz"):
        assert (tmp_path / "a" / run).read_bytes() == (tmp_path / "b" / run).read_bytes()


def test_a_gpu_grid_runs_several_processes_but_never_more_than_the_cores():
    assert compare.default_workers("cpu") == (os.cpu_count() or 1)
    assert 1 <= compare.default_workers("cuda") <= min(compare.GPU_WORKERS, os.cpu_count() or 1)
    args = compare.build_parser().parse_args(["--device", "cuda", "--archive", "g.tgz", "--resume-from", "h.tgz"])
    assert (args.device, args.archive, args.resume_from) == ("cuda", "g.tgz", "h.tgz")
