"""``mmlrepro check``: the device self-check (on the CPU here; on CUDA whenever present)."""

import pytest
import torch

from mmlrepro.check import device_checks
from mmlrepro.cli import main

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_every_check_passes_on_the_device(device):
    rows = device_checks(device)
    assert len(rows) == 7
    assert all(row["ok"] for row in rows), [row for row in rows if not row["ok"]]


def test_check_command_prints_each_check_and_succeeds(capsys):
    assert main(["check", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 7 and "7 of 7 checks passed on cpu" in out


def test_check_refuses_a_missing_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        device_checks("cuda")
