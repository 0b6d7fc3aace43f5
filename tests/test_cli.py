"""The mmlrepro command: help, datasets, train, reproduce and report, and clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmlrepro.cli import build_parser, main


@pytest.mark.parametrize("command", ["datasets", "train", "reproduce", "report", "notebooks", "verify"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: mmlrepro " + command in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "mmlrepro", "--help"], capture_output=True, text=True, check=True)
    assert "reproduce" in out.stdout and "report" in out.stdout


@pytest.mark.real_data
def test_datasets_prints_table1_beside_the_paper(data_dir, capsys):
    assert main(["datasets", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "29858" in out and "40981" in out and "1237259" in out and "0.00084" in out
    assert "False" not in out and out.count("True") == 12  # every count matches the paper


def test_train_stores_then_reuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMLREPRO_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    args = ["train", "--dataset", "synthetic:200:300", "--loss", "ccl", "--param", "margin=0.5",
            "--param", "neg_weight=10", "--negatives", "10", "--epochs", "2", "--lr", "0.01",
            "--device", "cpu", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained on" in out and "2 epochs:" in out and "s training +" in out
    files = list((tmp_path / "runs").glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["config"]["loss_params"] == {"margin": 0.5, "neg_weight": 10}
    assert main(args) == 0
    assert "from the store" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "/no/such/folder", "--loss", "bpr", "--epochs", "1"], "/no/such/folder"),
    (["train", "--dataset", "synthetic", "--loss", "focal"], "focal"),
    (["train", "--dataset", "synthetic", "--loss", "ccl", "--param", "margin=3", "--param", "neg_weight=1"], "margin"),
    (["reproduce", "table9", "--profile", "quick"], "table9"),
])
def test_bad_input_is_a_clear_error_before_compute(args, message, tmp_path, capsys):
    assert main([*args, "--results-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_reproduce_trains_the_paper_profile_by_default_with_a_gpu_only():
    from mmlrepro.cli import default_profile

    profile, why = default_profile()
    import torch

    assert profile == ("paper" if torch.cuda.is_available() else None) and why


COMMITTED_STORE = Path(__file__).resolve().parent.parent / "results"


def _no_gpu_no_training(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for target in ("mmlrepro.runner.run_missing", "mmlrepro.runner.train", "mmlrepro.train.train"):
        monkeypatch.setattr(target, lambda *a, **k: pytest.fail("reproduce trained without --profile"))


def test_reproduce_without_gpu_leads_with_the_stored_paper_runs_and_trains_nothing(tmp_path, capsys, monkeypatch):
    """Issue 36: on a machine without a GPU, a plain `reproduce` (what `make reproduce` runs) shows
    the paper-profile results of the committed store first, then the plan, and trains nothing."""
    store = tmp_path / "results"
    shutil.copytree(COMMITTED_STORE, store)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    _no_gpu_no_training(monkeypatch)
    assert main(["reproduce", "--results-dir", str(store)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("No CUDA GPU") and "nothing is trained" in out[0]
    first = [i for i, line in enumerate(out) if line.startswith("| Table 2 |")]
    assert first and any(line.startswith("- **What holds**") for line in out[first[0]:])
    plan = next(i for i, line in enumerate(out) if line.startswith("`--profile paper` would train"))
    assert first[0] < plan and "hours by the stored timings" in out[plan]
    assert any("The quick profile" in line and 'ARGS="--profile quick"' in line for line in out)
    assert out[-1].startswith("Nothing was trained. To train the paper profile here")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_the_quick_profile_says_how_many_paper_orderings_it_keeps(tmp_path, capsys, monkeypatch):
    store = tmp_path / "results"
    shutil.copytree(COMMITTED_STORE / "runs", store / "runs")
    monkeypatch.setattr("mmlrepro.runner.run_missing", lambda *a, **k: [])
    assert main(["reproduce", "table3", "--profile", "quick", "--no-compare", "--results-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"note: the stored quick-profile runs keep \d+ of the \d+ orderings of the paper", out)


def test_reproduce_without_gpu_refuses_training_options_without_a_profile(tmp_path, capsys, monkeypatch):
    _no_gpu_no_training(monkeypatch)
    assert main(["reproduce", "--jobs", "2", "--results-dir", str(tmp_path)]) == 2
    assert "--jobs applies to training" in capsys.readouterr().err


def test_parser_builds_without_side_effects():
    parser = build_parser()
    assert parser.prog == "mmlrepro"


class _Stop(Exception):
    pass


def test_param_overrides_one_value_on_top_of_the_spec_settings_and_says_so_first(tmp_path, capsys, monkeypatch):
    """Defect 1: --param neg_weight=500 keeps Yelp's margins and weights, printed before training."""
    import mmlrepro.runner as runner_mod
    from mmlrepro.data import synthetic

    seen = []

    def fake_train(config, **kwargs):
        seen.append((config, capsys.readouterr().out))
        raise _Stop

    monkeypatch.setattr(runner_mod, "load_run_dataset", lambda config, data_dir=None: synthetic(200, 300))
    monkeypatch.setattr(runner_mod, "train", fake_train)
    with pytest.raises(_Stop):
        main(["train", "--dataset", "yelp2018", "--loss", "mml", "--param", "neg_weight=500",
              "--results-dir", str(tmp_path), "--device", "cpu"])
    config, printed = seen[0]
    assert config.loss_hp == {"margins": [0.6, 0.7, 0.8, 0.9], "weights": [0.05, 0.15, 0.2, 0.6],
                              "pos_weight": 1.0, "neg_weight": 500.0}
    assert "margins=[0.6, 0.7, 0.8, 0.9]" in printed and "neg_weight=500.0" in printed
    with pytest.raises(_Stop):
        main(["train", "--dataset", "gowalla", "--model", "simplex", "--loss", "ccl", "--param", "margin=0.8",
              "--results-dir", str(tmp_path), "--device", "cpu"])
    assert seen[1][0].loss_hp == {"margin": 0.8, "neg_weight": 250.0}  # SimpleX-Gowalla's weight kept


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "synthetic", "--device", "cuda:7"], "cuda"),
    (["train", "--dataset", "synthetic", "--device", "cpu:abc"], "cpu:abc"),
    (["train", "--dataset", "synthetic", "--profile", "quick"], "--profile"),
    (["train", "--dataset", "synthetic_mine"], "synthetic_mine"),
    (["check", "--device", "foo"], "foo"),
    (["reproduce", "table3", "--profile", "quick", "--datasets", "movielens"], "movielens"),
    (["reproduce", "table3", "--profile", "quick", "--max-minutes", "-5"], "max_minutes"),
])
def test_more_bad_input_is_one_line_before_compute(args, message, tmp_path, capsys, monkeypatch):
    import torch

    if "cuda" in message and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    import mmlrepro.train as train_mod

    monkeypatch.setattr(train_mod.ExactStep, "__call__", lambda *a, **k: pytest.fail("a step ran"))
    extra = [] if args[0] == "check" else ["--results-dir", str(tmp_path)]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_report_names_a_bad_store_instead_of_a_traceback(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "x.json").write_text("{}")
    assert main(["report", "--results-dir", str(tmp_path), "--output", str(tmp_path / "R.md"),
                 "--figures-dir", str(tmp_path / "f")]) == 2
    assert "migrate" in capsys.readouterr().err
    assert main(["report", "--results-dir", str(tmp_path / "x.md"), "--output", str(tmp_path)]) == 2
    assert "folder, not a file" in capsys.readouterr().err


def test_migrate_command(tmp_path, capsys):
    assert main(["migrate", "--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert "(dry run) 0 record(s) migrated" in capsys.readouterr().out


def test_the_plan_is_estimated_from_the_stored_timings(tmp_path):
    from mmlrepro.catalogue import paper_config
    from mmlrepro.data import KNOWN_FINGERPRINTS
    from mmlrepro.results import ResultsStore, RunResult
    from mmlrepro.runtimes import estimate_minutes

    def put(config, s_per_epoch, epochs=4):
        history = [{"epoch": i, "recall@20": 0.1, "train_s": s_per_epoch - 1, "eval_s": 1.0} for i in range(1, epochs + 1)]
        ResultsStore(tmp_path).put(RunResult(config, KNOWN_FINGERPRINTS[config.dataset], history, history[-1], history[-1],
                                             {}, {"train_s": (s_per_epoch - 1) * epochs, "eval_s": float(epochs)}, "cpu"))

    put(paper_config("yelp2018", "mf", "ccl", n_negatives=10), 20.0)
    put(paper_config("yelp2018", "mf", "ccl"), 50.0)
    put(paper_config("yelp2018", "mf", "mml"), 60.0)
    plan = [paper_config("yelp2018", "mf", "ccl", n_negatives=10, seed=2020),    # same cell: 20 s an epoch
            paper_config("yelp2018", "mf", "mml", n_negatives=400),               # a line in N through the three
            paper_config("yelp2018", "mf", "ccl", selection="early_stop"),        # read off its stored twin
            paper_config("gowalla", "mf", "mml", seed=2020),
            paper_config("gowalla", "mf", "mml", seed=2020, selection="early_stop"),  # its twin is planned
            paper_config("yelp2018", "mf", "mml", selection="early_stop", lr_reduce=True)]
    got = estimate_minutes(plan, ResultsStore(tmp_path).records())
    assert got[0] == pytest.approx(20.0 * 100 / 60)
    slope = (55.0 - 20.0) / 90                                  # least squares through (10, 20), (100, 50), (100, 60)
    assert got[1] == pytest.approx((20.0 + slope * 390) * 100 / 60)
    assert got[2:5] == [0.0, None, 0.0]
    assert got[5] == pytest.approx(60.0 * 100 / 60)             # lr cuts: trained, like the stored MML cell
