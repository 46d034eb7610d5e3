"""The mutation score per module, from what `mutmut run` left in mutants/ (docs/mutation.md).

    python bench/mutation_scores.py                      # the table of docs/mutation.md
    python bench/mutation_scores.py --undecided          # and every mutant still to triage, by name

A mutant counts as killed when a test failed on it (or mutmut's type check caught it), or when
tests/mutation_equivalents.md lists it under "Killed by the normal suite" (a check that cannot run
under mutmut; the "killed" column says how many in brackets); as equivalent when that file lists it
anywhere else; every other checked mutant
(survived, timed out, "suspicious", reached by no test) is undecided: it needs a test or a line in
that file. The score is killed / (checked - equivalent): the share of the mutants that could change
a result and that a test catches.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
from collections import Counter, defaultdict

KILLED = {1, 3, 37}                       # mutmut's exit codes for a failed test / a caught type error


OUTSIDE = "## Killed by the normal suite"    # the equivalents file's section of mutants killed outside mutmut


def equivalents(path: str = "tests/mutation_equivalents.md") -> tuple[set, set]:
    """The mutant names written in backticks in the equivalents file: (equivalent, killed outside
    mutmut), the second from the OUTSIDE section on. A name is short (`x_run__mutmut_5`: every
    module's mutant of that name) or, where two modules have a function of the same name, qualified
    by its module (`tinysml.evidence.x_build_parser__mutmut_18`)."""
    if not os.path.exists(path):
        return set(), set()
    text = open(path, encoding="utf-8").read()
    head, _, outside = text.partition(OUTSIDE)
    names = lambda part: set(re.findall(r"`((?:[\w.]+\.)?x\S*?__mutmut_\d+)`", part))  # noqa: E731
    return names(head), names(outside)


def _listed(name: str, entries: set) -> bool:
    """Whether mutmut's full ``name`` (module.function__mutmut_N) is in ``entries``, qualified or short."""
    return name in entries or name.rsplit(".", 1)[-1] in entries


def outcomes(root: str = "mutants") -> dict:
    """{module path: {mutant name: exit code or None (not checked)}} from mutmut's .meta files."""
    found = {}
    for meta in sorted(glob.glob(os.path.join(root, "**", "*.py.meta"), recursive=True)):
        module = os.path.relpath(meta, root)[: -len(".meta")]
        with open(meta) as f:
            found[module] = json.load(f)["exit_code_by_key"]
    return found


def scores(found: dict, equivalent: set, outside: set = frozenset()) -> list:
    rows = []
    for module, codes in found.items():
        count, undecided = Counter(), []
        for name, code in codes.items():
            if code is None:
                count["not checked"] += 1
            elif code in KILLED:
                count["killed"] += 1
            elif _listed(name, outside):
                count["killed"] += 1
                count["outside"] += 1
            elif _listed(name, equivalent):
                count["equivalent"] += 1
            else:
                count["undecided"] += 1
                undecided.append((name, code))
        checked = len(codes) - count["not checked"]
        rows.append({"module": module, "mutants": len(codes), "checked": checked, **count,
                     "score": count["killed"] / max(1, checked - count["equivalent"]), "undecided_names": undecided})
    return rows


def stale_entries(found: dict, equivalent: set, outside: set = frozenset()) -> list:
    """Names the equivalents file lists that mutmut killed or no longer has (a module's mutants are
    renumbered when its code changes, so such a line may now describe another mutant), and short
    names that more than one module has (each then needs its module written in front)."""
    codes = {name: code for module in found.values() for name, code in module.items()}
    stale = []
    for entry in sorted(equivalent | outside):
        matches = [code for name, code in codes.items() if _listed(name, {entry})]
        if len(matches) > 1:
            stale.append(f"{entry} (in {len(matches)} modules: write its module in front)")
        elif not matches or matches[0] in KILLED:
            stale.append(entry)
    return stale


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", default="mutants", help="mutmut's working folder")
    p.add_argument("--undecided", action="store_true", help="list every undecided mutant")
    p.add_argument("--all", action="store_true", help="also the modules with no checked mutant")
    args = p.parse_args(argv)
    found, listed = outcomes(args.mutants), equivalents()
    rows = scores(found, *listed)
    print("| module | mutants | checked | killed | equivalent | undecided | score |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["checked"] or args.all:
            killed = f"{r.get('killed', 0)}" + (f" ({r['outside']} outside mutmut)" if r.get("outside") else "")
            print(f"| {r['module']} | {r['mutants']} | {r['checked']} | {killed} | {r.get('equivalent', 0)} | "
                  f"{r.get('undecided', 0)} | {100 * r['score']:.1f}% |")
    stale = stale_entries(found, *listed)
    if stale:
        print("\nlisted in tests/mutation_equivalents.md but killed or gone (renumbered: read them again):")
        print("\n".join(f"  {n}" for n in stale))
    if args.undecided:
        codes = defaultdict(list)
        for r in rows:
            for name, code in r["undecided_names"]:
                codes[code].append(name)
        for code, names in sorted(codes.items(), key=lambda kv: str(kv[0])):
            print(f"\nexit code {code} ({len(names)}):")
            print("\n".join(f"  {n}" for n in names))


if __name__ == "__main__":
    main()
