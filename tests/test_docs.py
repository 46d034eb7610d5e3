"""The documentation tells the truth: README's main-job table is the committed results' table in
the script's format, every README snippet runs as shown, and the project cites only its own files."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _main_job():
    spec = importlib.util.spec_from_file_location("main_job", os.path.join(ROOT, "examples", "smldist_basicmotions.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_main_job_table_is_the_committed_results():
    """`examples/smldist_basicmotions.py --write-readme` wrote README's table and docs/main_job.json
    together; the table must be exactly what the script prints for those results."""
    job = _main_job()
    committed = json.loads(_read("docs", "main_job.json"))
    results = {(r["seed"], r["kind"]): r for r in committed["runs"]}
    readme = _read("README.md")
    block = readme[readme.index(job.README_BEGIN) + len(job.README_BEGIN):readme.index(job.README_END)].strip()
    assert block == job.table(results, committed["seeds"])
    assert block.count("\n") == 4 and "mean ± sample std, n - 1" in block


def test_the_table_format_by_hand():
    job = _main_job()
    run = {"teacher": {"test": {"accuracy": 1.0, "macro_f1": 1.0}, "params": 1000, "macs": 2.5e6},
           "student": {"test": {"accuracy": 0.9, "macro_f1": 0.8}, "params": 100, "macs": 5e5}}
    other = {"teacher": {"test": {"accuracy": 0.8, "macro_f1": 0.6}, "params": 1000, "macs": 2.5e6},
             "student": {"test": {"accuracy": 0.7, "macro_f1": 0.6}, "params": 100, "macs": 5e5}}
    text = job.table({(0, "smldist"): run, (0, "alone"): run, (1, "smldist"): other, (1, "alone"): other}, [0, 1])
    # mean 0.9, sample std sqrt(((1-0.9)^2 + (0.8-0.9)^2) / 1) = 0.141
    assert "| teacher (`har-teacher`) | 0.900 ± 0.141 | 0.800 ± 0.283 | 1,000 | 2.50 M |" in text
    assert "| SMLDist student | 0.800 ± 0.141 | 0.700 ± 0.141 | 100 | 0.50 M |" in text


def _python_snippets():
    return re.findall(r"```python\n(.*?)```", _read("README.md"), re.S)


def test_readme_has_snippets():
    assert len(_python_snippets()) >= 2


@pytest.mark.parametrize("index", range(len(_python_snippets())))
def test_every_readme_snippet_runs_as_shown(index, tmp_path):
    code = _python_snippets()[index]
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()


def _project_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return [f for f in out if f.endswith((".py", ".md", ".toml", ".sh", ".cu", ".cuh")) and not f.startswith(".ci/")]


def test_nothing_cites_a_file_outside_the_project():
    outside = re.compile(r"SPEC\.md|DESIGN\.md|\.\./shared")
    hits = [f for f in _project_files() if f != "tests/test_docs.py" and outside.search(_read(f))]
    assert hits == []


def test_every_section_cited_exists():
    headings = set(re.findall(r"^## (\d+)\. ", _read("docs", "algorithm.md"), re.M))
    assert headings == {str(i) for i in range(1, 11)}
    cited = {(f, n) for f in _project_files() for n in re.findall(r"docs/algorithm\.md,? \(?section (\d+)", _read(f))}
    assert cited and {n for _, n in cited} <= headings, cited


def test_readme_links_point_to_files_that_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", _read("README.md")):
        assert os.path.exists(os.path.join(ROOT, target)), target


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_anchors_name_a_heading():
    links = re.findall(r"\]\(([^)#:]+\.md)#([^)]+)\)", _read("README.md"))
    assert links                                       # the GPU results are linked by section
    for target, anchor in links:
        headings = re.findall(r"^#+ (.+)$", _read(*target.split("/")), re.M)
        assert anchor in {_slug(h) for h in headings}, (target, anchor)
