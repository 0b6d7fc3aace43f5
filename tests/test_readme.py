"""The README's front page: the at-a-glance block's markers, its links, and its papermill example,
executed as written (only the output paths move into a temporary folder)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
START, END = "<!-- at-a-glance:start -->", "<!-- at-a-glance:end -->"


def test_at_a_glance_block_is_delimited_once():
    lines = README.splitlines()
    assert lines.count(START) == 1 and lines.count(END) == 1
    block = README.split(START, 1)[1].split(END, 1)[0]
    assert lines.index(START) < lines.index(END) and block.strip()
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", block):
        assert (ROOT / figure).is_file(), figure


def test_links_point_to_files():
    targets = {t.split("#", 1)[0] for t in re.findall(r"\]\(([^)]+)\)", README)}
    missing = [t for t in targets if t and "://" not in t and not (ROOT / t).exists()]
    assert not missing, missing


def papermill_example() -> list[str]:
    [line] = [line for line in README.splitlines() if line.startswith("papermill ")]
    return shlex.split(line)


@pytest.mark.notebooks
@pytest.mark.real_data
def test_papermill_example_runs(tmp_path, data_dir):
    args = papermill_example()
    assert args[1] == "notebooks/05_figure3_negatives.ipynb"
    params = dict(zip(args[4::3], args[5::3], strict=True))
    assert args[3::3] == ["-p"] * len(params) and params["smoke"] == "True"
    out, store = tmp_path / "out.ipynb", tmp_path / "store"
    args[2] = str(out)
    args[args.index(params["results_dir"])] = str(store)
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MMLREPRO_DATA_DIR": str(data_dir),
                               "TQDM_DISABLE": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)
    assert list((store / "runs").glob("*.json"))  # it trained its smoke runs into the scratch store
    assert sorted(p.name for p in (store / "figures").glob("*.png")) == [
        "figure3_ndcg20_smoke.png", "figure3_recall20_smoke.png"]
