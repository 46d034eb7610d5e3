"""A run directory's identity: the config it was started with and the teacher it distils from.

A run resumes only under the same identity; anything else is refused with what differs, so that
no student is ever trained under two configurations or distilled from two teachers.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict

from .. import io

RESUMABLE_ANYWHERE = ("device", "teacher_cache")     # config keys a run may change when it resumes


def check_run_dir(run_dir: str, config) -> None:
    """Create ``run_dir`` with the run's config.json, or check that the saved config is this one."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.json")
    current = asdict(config)
    if os.path.exists(path):
        # options added after a run was written count as their defaults (which keep the old behaviour)
        saved = {**asdict(type(config)()), **json.load(open(path))}
        diffs = [f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}" for k in sorted(set(saved) | set(current))
                 if saved.get(k) != current.get(k) and k not in RESUMABLE_ANYWHERE]
        if diffs:
            raise ValueError(f"run directory {run_dir!r} holds a run with another configuration; refusing to resume:\n  "
                             + "\n  ".join(diffs) + "\nuse another directory, or remove it to start afresh")
    else:
        io.write_json(path, current)


def check_teacher_identity(run_dir: str, teacher_checkpoint: str | None) -> dict:
    """The teacher belongs to a run's identity. The first call records where it came from (trained
    in this run, or a checkpoint file with its sha256) in ``teacher.json``. A resumed run given
    another teacher is refused, so no student is ever distilled from two teachers; one given no
    teacher reuses the recorded checkpoint if its content is unchanged."""
    from ..data.fetch import sha256_file

    def of_file(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher checkpoint {path!r} does not exist or is not a file")
        return {"source": "checkpoint", "sha256": sha256_file(path), "path": str(path)}

    def show(t):
        return (f"the teacher checkpoint {t.get('path')!r} (sha256 {str(t.get('sha256'))[:12]}...)"
                if t.get("source") == "checkpoint" else "a teacher trained in the run directory")

    path = os.path.join(run_dir, "teacher.json")
    saved = json.load(open(path)) if os.path.exists(path) else None
    if teacher_checkpoint:
        identity = of_file(teacher_checkpoint)
    elif saved and saved.get("source") == "checkpoint":
        if not os.path.isfile(str(saved.get("path"))):
            raise FileNotFoundError(f"run directory {run_dir!r} was started with {show(saved)}, which is gone; "
                                    f"pass it again with --teacher (its sha256 must match)")
        identity = of_file(saved["path"])
    else:
        identity = {"source": "trained in this run"}
    if saved is None:
        io.write_json(path, identity)
        return identity
    if (saved.get("source"), saved.get("sha256")) != (identity["source"], identity.get("sha256")):
        raise ValueError(f"run directory {run_dir!r} was started with {show(saved)}, now given {show(identity)}; "
                         f"refusing to resume a student under another teacher. Use another directory, or "
                         f"remove it to start afresh")
    return {**saved, **identity}
