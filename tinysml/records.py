"""A grid's finished runs as small records committed to the repository, so that a study survives a
new machine: ``tinysml compare/evidence --records DIR`` writes one JSON file per finished run
(``DIR/seed<k>/<variant>.json``: its config, the teacher's identity and sha256, the validation
history, validation and test scores, costs; never weights), reuses every run that has a record
instead of running it again, and ``tinysml evidence --report-only --records DIR`` writes the
report from the records alone.

A record is the run's ``results.json`` with its name and seed added and the machine's run folder
removed; it is written atomically and only rewritten when its content changes.
"""
from __future__ import annotations

import json
import os

from . import io


def slug(name: str) -> str:
    """A variant's name as a folder or file name: "KD (Hinton)" -> "kd--hinton" (run folders too)."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def path(records: str, seed: int, name: str) -> str:
    return os.path.join(records, f"seed{seed}", f"{slug(name)}.json")


def as_record(results: dict, name: str, seed: int) -> dict:
    return {**{k: v for k, v in results.items() if k != "run_dir"}, "name": name, "seed": seed}


def save(records: str, name: str, seed: int, results: dict) -> bool:
    """Write one run's record; returns whether the file changed."""
    target = path(records, seed, name)
    record = as_record(results, name, seed)
    if os.path.exists(target):
        with open(target) as f:
            if json.load(f) == json.loads(json.dumps(record)):
                return False
    io.write_json(target, record)
    return True


def load(records: str, seeds, names) -> dict:
    """{name: {seed: results}} of every record under ``records`` for these seeds and names."""
    found = {}
    for name in names:
        for seed in seeds:
            p = path(records, seed, name)
            if os.path.exists(p):
                with open(p) as f:
                    rec = json.load(f)
                if rec.get("name") != name or rec.get("seed") != seed:
                    raise ValueError(f"{p} holds the record of {rec.get('name')!r} seed {rec.get('seed')!r}, "
                                     f"not of {name!r} seed {seed}: the records folder is inconsistent")
                found.setdefault(name, {})[seed] = rec
    return found
