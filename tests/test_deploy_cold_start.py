"""The deployment path's first answer never waits for a compiler: with an empty kernel cache NumPy
answers while a background thread compiles, then the compiled path takes over; the two paths agree
to a stated bound; where no cache can be written NumPy answers and a warning says why; a warm cache
that cannot be written (a read-only image) is copied where it can be; ``tinysml warmup`` compiles
ahead of time and says where the cache went."""
import hashlib
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tinysml import deploy, deploy_compiled
from tinysml.deploy import Predictor
from tinysml.kernels import cache_dir

PROBABILITY_TOL = 1e-5            # |p_numba - p_numpy|, float32 on both paths, another summation order
TIE_MARGIN = 1e-4                 # top-two probabilities closer than this may order either way


def _first_answer(env_cache: str) -> str:
    code = ("import numpy as np\nfrom tinysml.deploy import Predictor\n"
            "p = Predictor.load('uci-har-student')\n"
            "proba = p.predict_proba(np.zeros((1, 6, 128), np.float32))\n"
            "print(p.backend, p.compiling is not None, int(proba.argmax()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, NUMBA_CACHE_DIR=env_cache, TINYSML_DEPLOY_COMPILE="background"))
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_with_an_empty_cache_numpy_answers_first_and_the_compiler_runs_behind(tmp_path):
    backend, compiling, label = _first_answer(str(tmp_path / "empty-cache"))      # the default mode: background
    assert (backend, compiling) == ("numpy", "True")            # answered; the compile thread was still running
    want = Predictor.load("uci-har-student", use_numba=False).predict_proba(np.zeros((1, 6, 128), np.float32))
    assert int(label) == int(want.argmax())


def test_the_background_compile_takes_over_and_agrees_with_numpy(monkeypatch):
    monkeypatch.setattr(deploy, "_when_to_compile", lambda use_numba: "background")
    p = Predictor.load("uci-har-student")
    x = np.random.default_rng(0).standard_normal((64, 6, 128)).astype(np.float32) * 2
    early = p.predict_proba(x)                                    # whichever path answers now
    assert p.wait_compiled(timeout=600) and p.backend == "numba" and p.compile_error is None
    late = p.predict_proba(x)
    numpy_path = Predictor.load("uci-har-student", use_numba=False).predict_proba(x)
    for proba in (early, late):
        assert np.abs(proba - numpy_path).max() <= PROBABILITY_TOL
    top2 = np.sort(numpy_path, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > TIE_MARGIN
    assert clear.sum() >= 32
    np.testing.assert_array_equal(late.argmax(1)[clear], numpy_path.argmax(1)[clear])


def test_numba_never_swaps_the_streams_behind_a_background_compile():
    """Numba colours its error messages with colorama, whose init()/deinit() reassign sys.stdout and
    sys.stderr process-wide; on the background compile thread that undid the main thread's
    redirection (pytest's capture, once, in a cold-cache CI run). Importing tinysml's kernels turns
    the colouring off before Numba is imported, unless the user set the variable."""
    code = ("import tinysml.kernels.cpu_process\nfrom numba.core import errors\n"
            "print(type(errors.termcolor()).__name__)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "NOPColorScheme"
    coloured = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env=dict(env, NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING=""))
    assert coloured.stdout.strip() != "NOPColorScheme"          # what the variable prevents


def test_compiled_or_nothing_and_numpy_only_are_still_there(monkeypatch):
    assert Predictor.load("uci-har-student", use_numba=True).backend == "numba"
    assert Predictor.load("uci-har-student", use_numba=False).backend == "numpy"
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", "never")
    assert deploy._when_to_compile(None) is None
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", "now")
    assert deploy._when_to_compile(None) == "now"
    monkeypatch.setenv("TINYSML_DEPLOY_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="TINYSML_DEPLOY_COMPILE"):
        deploy._when_to_compile(None)


def test_no_writable_cache_means_numpy_and_one_warning(monkeypatch):
    monkeypatch.setattr(cache_dir, "_choice", {"dir": "/nowhere", "writable": False, "how": "nowhere: test"})
    monkeypatch.setattr(deploy_compiled, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Predictor.load("uci-har-student")
        q = Predictor.load("uci-har-student")
    assert p.backend == q.backend == "numpy" and p.compiling is None
    assert len(caught) == 1 and "no writable place for Numba's kernel cache" in str(caught[0].message)
    p.predict_proba(np.zeros((2, 6, 128), np.float32))


def test_a_read_only_install_falls_back_to_a_writable_cache_and_keeps_a_warm_one(tmp_path, monkeypatch):
    """The package folder cannot be written (simulated: root writes anywhere, so the check is
    replaced): the user's cache folder is next; a warm read-only cache is copied there, its time
    stamps kept, so the image starts warm; with nothing writable, nothing is chosen."""
    in_tree = tmp_path / "pkg" / "__pycache__"
    in_tree.mkdir(parents=True)
    (in_tree / "cpu_network.network_forward-197.py311.nbi").write_bytes(b"index")
    (in_tree / "cpu_network.network_forward-197.py311.1.nbc").write_bytes(b"code")
    os.utime(in_tree / "cpu_network.network_forward-197.py311.nbi", (1e9, 1e9))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(cache_dir, "IN_TREE", str(in_tree))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    read_only = {str(in_tree)}
    real = cache_dir._writable
    monkeypatch.setattr(cache_dir, "_writable", lambda f: f not in read_only and real(f))
    chosen = cache_dir.choose()
    assert chosen["writable"] and chosen["dir"] == str(tmp_path / "home-cache" / "tinysml" / "numba")
    copied = os.path.join(cache_dir.kernel_folder(chosen["dir"]), "cpu_network.network_forward-197.py311.nbi")
    assert open(copied, "rb").read() == b"index" and os.stat(copied).st_mtime == 1e9
    read_only |= {chosen["dir"], cache_dir.temp_cache()}
    nothing = cache_dir.choose()
    assert not nothing["writable"] and "NUMBA_CACHE_DIR" in nothing["how"]


def test_a_cache_dir_under_a_file_is_not_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    assert not cache_dir._writable(str(tmp_path / "file" / "cache"))
    assert cache_dir._writable(str(tmp_path / "fresh" / "cache"))


def _index(path, version, stamp):
    """A cache index as Numba writes one: its version, then (source stamp, overloads)."""
    with open(path, "wb") as f:
        pickle.dump(version, f, protocol=-1)
        f.write(pickle.dumps((stamp, {}), protocol=-1))


def test_the_freshness_check_reads_the_version_and_source_stamp_numba_reads(tmp_path):
    folder = cache_dir.kernel_folder(str(tmp_path))
    names = ("network_forward", "linear_softmax")
    assert not cache_dir.cached(str(tmp_path), "cpu_network", names)
    os.makedirs(folder)
    source = os.path.join(cache_dir.KERNELS, "cpu_network.py")
    digest = hashlib.sha256(open(source, "rb").read()).digest()
    version = cache_dir._numba_version()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}{sys.abiflags}"
    index = {name: os.path.join(folder, f"cpu_network.{name}-10.{tag}.nbi") for name in names}
    for name in names:
        _index(index[name], version, digest)
    assert cache_dir.cached(str(tmp_path), "cpu_network", names)
    st = os.stat(source)
    os.utime(index["linear_softmax"], (st.st_mtime - 1e5, st.st_mtime - 1e5))
    assert cache_dir.cached(str(tmp_path), "cpu_network", names)        # written before the source's time stamp
    _index(index["linear_softmax"], version, hashlib.sha256(b"another source").digest())
    assert not cache_dir.cached(str(tmp_path), "cpu_network", names)    # another source: stale
    _index(index["linear_softmax"], "0.0.1", digest)
    assert not cache_dir.cached(str(tmp_path), "cpu_network", names)    # another Numba: stale
    _index(index["linear_softmax"], version, (st.st_mtime, st.st_size))
    assert cache_dir.cached(str(tmp_path), "cpu_network", names)        # older Numba's (mtime, size) stamp
    _index(index["linear_softmax"], version, (st.st_mtime, st.st_size + 1))
    assert not cache_dir.cached(str(tmp_path), "cpu_network", names)
    with open(index["linear_softmax"], "wb") as f:
        f.write(b"\x80\x05not a pickle")
    assert not cache_dir.cached(str(tmp_path), "cpu_network", names)    # corrupt: not fresh, no error


def test_warmup_compiles_every_deployment_kernel_and_says_where(capsys):
    from tinysml import cli
    cli.main(["warmup"])
    out = capsys.readouterr().out
    assert "compiled network_forward, network_forward_parallel, linear_softmax" in out and "cached in " in out
    where = out.split("cached in ")[1].split(" (")[0]
    assert cache_dir.cached(os.environ.get("NUMBA_CACHE_DIR") or None, "cpu_network",
                            ("network_forward", "network_forward_parallel", "linear_softmax"))
    assert os.path.isdir(where)
