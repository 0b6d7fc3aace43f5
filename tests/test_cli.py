"""The mmlrepro command: help, datasets, train, reproduce and report, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmlrepro.cli import build_parser, main


@pytest.mark.parametrize("command", ["datasets", "train", "reproduce", "report", "notebooks"])
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


def test_reproduce_default_profile_is_quick_without_gpu():
    from mmlrepro.cli import default_profile

    profile, why = default_profile()
    import torch

    assert profile == ("paper" if torch.cuda.is_available() else "quick") and why


def test_parser_builds_without_side_effects():
    parser = build_parser()
    assert parser.prog == "mmlrepro"
