"""``mmlrepro check``: the device self-check (on the CPU here; on CUDA whenever present)."""

import pytest
import torch

from mmlrepro.check import device_checks
from mmlrepro.cli import main

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_every_check_passes_on_the_device(device):
    rows = device_checks(device)
    assert len(rows) == (12 if device == "cpu" else 11)   # the compiled kernel's row: CPU only
    assert all(row["ok"] for row in rows), [row for row in rows if not row["ok"]]


def test_check_command_prints_each_check_and_succeeds(capsys):
    assert main(["check", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 12 and "12 of 12 checks passed on cpu" in out
    assert "compiled negatives kernel = PyTorch path" in out


def test_check_refuses_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        device_checks("cuda")


def test_the_no_sync_check_fails_a_step_that_reads_back(monkeypatch):
    """What the GPU's sync debug mode would catch, shown on the CPU: an error in the step is a
    failed row naming it, not a crash of the command."""
    import mmlrepro.check as check_mod

    def reads_back(*args, **kwargs):
        raise RuntimeError("called a synchronizing CUDA operation")

    monkeypatch.setattr(check_mod, "batch_loss", reads_back)
    row = check_mod.sync_check(torch.device("cpu"), *check_mod.SYNC_RUNS[0])
    assert not row["ok"] and "synchronizing" in row["gap"]
