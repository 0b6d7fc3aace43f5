"""benchmarks/gpu_session.sh: the one device call of a lent GPU, its plumbing tried on the CPU.

A lent GPU has 15 minutes in all, so the script must work the first time: the checks, a budget
it keeps, paper runs into the tree's store and one archive of what it wrote. Here it runs with
``DEVICE=cpu PROFILE=smoke SKIP_BENCH=1`` in a scratch copy of the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real_data
def test_gpu_session_script_checks_runs_and_archives_within_its_budget(data_dir, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "mmlrepro", tree / "mmlrepro", ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "benchmarks").mkdir()
    shutil.copy(ROOT / "benchmarks" / "gpu_session.sh", tree / "benchmarks")
    (tree / "results" / "runs").mkdir(parents=True)
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "PROFILE": "smoke", "SKIP_BENCH": "1", "BUDGET_S": "70",
           "RUN_GROUPS": "table3", "SEEDS": "1", "JOBS": "2", "OUT": str(out), "MMLREPRO_DATA_DIR": str(data_dir),
           "MMLREPRO_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           # the plumbing, not the compiled kernel (tests/test_kernels.py): a first build takes
           # about a minute, more than this 70 s budget leaves the checks
           "MMLREPRO_KERNELS": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (out / "gpu_session.txt").read_text()
    assert "checks passed on cpu" in log
    assert "reproduce table3 [smoke]" in log
    stored = sorted(p.name for p in (tree / "results" / "runs").glob("*.json"))
    assert stored, log
    with tarfile.open(out / "results.tgz") as archive:
        names = sorted(Path(n).name for n in archive.getnames())
    assert [n for n in names if n.endswith(".json")] == stored  # exactly the store files this call wrote
    assert sorted(n for n in names if n.endswith(".npz")) == sorted(
        p.name for p in (tree / "results" / "per_user").glob("*.npz"))
    assert "--jobs 2" in log and "training with 2 worker processes on cpu" in log
    assert f"{len(stored)} new store files" in log
    seconds = int(log.rsplit("== done after ", 1)[1].split()[0])
    assert seconds <= 70

    # a stored run without per-user values (trained before issue 16) is trained again, and the
    # archive carries its new record and per-user values and the old record, set aside
    stale = sorted((tree / "results" / "per_user").glob("*.npz"))[0]
    stale.unlink()
    again = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=tree, env={**env, "OUT": str(tmp_path / "out2")},
                           capture_output=True, text=True, timeout=150)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (tmp_path / "out2" / "gpu_session.txt").read_text()
    assert "--refresh-per-user" in log and "1 stored without per-user values to run again" in log, log
    assert stale.exists()
    with tarfile.open(tmp_path / "out2" / "results.tgz") as archive:
        names = sorted(archive.getnames())
    aside = [n for n in names if n.startswith("results/set_aside/")]
    assert f"results/runs/{stale.stem}.json" in names and f"results/per_user/{stale.name}" in names, names
    assert len(aside) == 1 and Path(aside[0]).name.startswith(stale.stem + "."), names
    # (a run the first call left for later may be trained too, hence the count from the archive)
    assert f"== {sum(n.startswith('results/runs/') for n in names)} new store files" in log


def test_gpu_session_script_parses_and_its_fixed_steps_fit_the_default_budget():
    script = ROOT / "benchmarks" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    fixed = sum(int(x) for x in text.split("else fixed=$(( ", 1)[1].split(" ))", 1)[0].split("+"))
    limits = [int(line.split()[1]) for line in text.splitlines()
              if line.strip().startswith("step ") and line.split()[1].isdigit()]
    assert sum(limits[:-1]) == fixed                    # every fixed step's limit is counted
    assert fixed + 30 + 60 <= 540                       # a few minutes are left for reproduce
