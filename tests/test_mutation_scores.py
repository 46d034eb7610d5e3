"""bench/mutation_scores.py, the score table of docs/mutation.md: which survivors the equivalents
file decides, by short name or by name qualified with its module, and which entries are stale or
ambiguous."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "bench" / "mutation_scores.py"
spec = importlib.util.spec_from_file_location("mutation_scores", SCRIPT)
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)

SURVIVED = 0                                           # mutmut's exit code when every test passed


def test_short_and_qualified_names_and_the_outside_section(tmp_path):
    f = tmp_path / "eq.md"
    f.write_text("# x\n\n- `x_run__mutmut_3`, `tinysml.evidence.x_build_parser__mutmut_18` (two reasons)\n"
                 "- `xǁTensorǁ__add____mutmut_2`: a method\n\n"
                 f"{ms.OUTSIDE}, not decidable under mutmut\n\n- `x_run__mutmut_9` (pipeline.py)\n", encoding="utf-8")
    equivalent, outside = ms.equivalents(str(f))
    assert equivalent == {"x_run__mutmut_3", "tinysml.evidence.x_build_parser__mutmut_18", "xǁTensorǁ__add____mutmut_2"}
    assert outside == {"x_run__mutmut_9"}
    assert ms.equivalents(str(tmp_path / "missing.md")) == (set(), set())


def test_a_qualified_entry_decides_only_its_own_modules_mutant():
    found = {"tinysml/evidence.py": {"tinysml.evidence.x_build_parser__mutmut_18": SURVIVED},
             "tinysml/power.py": {"tinysml.power.x_build_parser__mutmut_18": SURVIVED,
                                  "tinysml.power.x_plan__mutmut_1": 1, "tinysml.power.x_plan__mutmut_2": None}}
    rows = {r["module"]: r for r in ms.scores(found, {"tinysml.evidence.x_build_parser__mutmut_18"})}
    assert rows["tinysml/evidence.py"]["equivalent"] == 1 and rows["tinysml/evidence.py"]["score"] == 0
    power = rows["tinysml/power.py"]
    assert (power["undecided"], power["killed"], power["not checked"], power["checked"]) == (1, 1, 1, 2)
    assert power["undecided_names"] == [("tinysml.power.x_build_parser__mutmut_18", SURVIVED)]
    assert power["score"] == 0.5
    both = {r["module"]: r for r in ms.scores(found, {"x_build_parser__mutmut_18"})}    # a short name: both
    assert both["tinysml/power.py"]["equivalent"] == 1 and both["tinysml/evidence.py"]["equivalent"] == 1
    outside = {r["module"]: r for r in ms.scores(found, set(), {"tinysml.power.x_build_parser__mutmut_18"})}
    assert outside["tinysml/power.py"]["killed"] == 2 and outside["tinysml/power.py"]["outside"] == 1


def test_stale_and_ambiguous_entries_are_named():
    found = {"tinysml/evidence.py": {"tinysml.evidence.x_build_parser__mutmut_18": SURVIVED,
                                     "tinysml.evidence.x_report__mutmut_1": 1},
             "tinysml/power.py": {"tinysml.power.x_build_parser__mutmut_18": 1}}
    assert ms.stale_entries(found, {"tinysml.evidence.x_build_parser__mutmut_18"}) == []
    assert ms.stale_entries(found, {"x_build_parser__mutmut_18"}) == [
        "x_build_parser__mutmut_18 (in 2 modules: write its module in front)"]
    assert ms.stale_entries(found, {"x_report__mutmut_1", "x_gone__mutmut_4"},
                            {"tinysml.power.x_build_parser__mutmut_18"}) == [
        "tinysml.power.x_build_parser__mutmut_18", "x_gone__mutmut_4", "x_report__mutmut_1"]   # killed, gone
