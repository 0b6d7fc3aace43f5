"""`mmlrepro verify`: stored runs trained again for their first epochs and compared (issue 36)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from mmlrepro.catalogue import catalogue_key, paper_config
from mmlrepro.cli import main
from mmlrepro.config import RunConfig
from mmlrepro.devices import cpu_model, device_name
from mmlrepro.runner import run
from mmlrepro.verify import (
    LOG_NAME,
    TOLERANCE,
    EpochValue,
    choose,
    last_verified,
    outcome,
    verify,
)

COMMITTED_STORE = Path(__file__).resolve().parent.parent / "results"
# The cheapest stored paper run (Yelp2018 MF + CCL, N = 10: about 25-35 s an epoch on a CPU).
CI_RUN = "aeebfe5cc615f94d"


def tiny(**changes) -> RunConfig:
    base = dict(dataset="synthetic:300:400", loss="ccl", loss_params={"margin": 0.5, "neg_weight": 10.0},
                n_negatives=20, batch_size=128, lr=1e-2, epochs=3, reg_lambda=1e-6, device="cpu", seed=7)
    return RunConfig(**{**base, **changes})


def _store(tmp_path: Path, *configs: RunConfig) -> tuple[Path, list[str]]:
    root = tmp_path / "store"
    keys = [run(c, results_dir=root, checkpoint_dir=tmp_path / "ckpt", log=None).key for c in configs]
    return root, keys


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tamper(root: Path, key: str, epoch: int, name: str, scale: float) -> float:
    path = root / "runs" / f"{key}.json"
    record = json.loads(path.read_text())
    record["history"][epoch - 1][name] *= scale
    path.write_text(json.dumps(record))
    return record["history"][epoch - 1][name]


@pytest.mark.parametrize("changes", [{}, {"selection": "early_stop", "lr_reduce": True, "patience": 1},
                                     {"selection": "honest"}])
def test_an_untouched_run_verifies_identical_and_its_store_is_not_written(tmp_path, capsys, changes):
    root, (key,) = _store(tmp_path, tiny(**changes))
    runs_before = _digest(root / "runs")
    code = main(["verify", key[:8], "--epochs", "2", "--results-dir", str(root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"#{key}" in out and ": identical" in out
    assert out.strip().splitlines()[-1] == (f"1 stored run checked, 1 agree (1 identical, 0 within tolerance "
                                             f"{TOLERANCE:g} on another CPU model), 0 differ")
    assert _digest(root / "runs") == runs_before
    entry = last_verified(root)[key]
    assert (entry["outcome"], entry["epochs"], entry["max_rel_diff"]) == ("identical", 2, 0.0)
    assert "threads" in entry["device"] and entry["time_utc"] and entry["git_commit"]


def test_a_tampered_history_differs_with_both_values_and_exit_1(tmp_path, capsys):
    root, (key,) = _store(tmp_path, tiny())
    stored = _tamper(root, key, 2, "recall@20", 1.01)
    code = main(["verify", key, "--epochs", "2", "--results-dir", str(root)])
    out = capsys.readouterr().out
    assert code == 1
    assert ": differs" in out and f"epoch 2 recall@20: stored {stored!r}, here " in out
    assert out.strip().splitlines()[-1].endswith(f"1 stored run checked, 0 agree (0 identical, 0 within tolerance "
                                                      f"{TOLERANCE:g} on another CPU model), 1 differ")
    assert last_verified(root)[key]["outcome"] == "differs"


def test_below_the_tolerance_agrees_on_another_cpu_model_only(tmp_path, capsys):
    """On the CPU model a run was made on only "identical" agrees; on another model a relative
    difference up to TOLERANCE is "within tolerance" (docs/cpu_profiles.md)."""
    root, (key,) = _store(tmp_path, tiny())
    _tamper(root, key, 1, "loss", 1 + TOLERANCE / 10)
    assert main(["verify", key, "--results-dir", str(root)]) == 1
    out = capsys.readouterr().out
    assert ": differs" in out and "tolerance 0 on the CPU model it was made on" in out
    path = root / "runs" / f"{key}.json"
    record = json.loads(path.read_text())
    record["history"][0]["device"] = "Other CPU (2 threads)"
    path.write_text(json.dumps(record))
    assert main(["verify", key, "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert ": within tolerance" in out and "epoch 1 loss: stored" in out and "on another CPU model" in out
    assert last_verified(root)[key]["tolerance"] == TOLERANCE


def test_more_epochs_than_comparable_across_devices_are_flagged(tmp_path, capsys):
    root, (key,) = _store(tmp_path, tiny())
    path = root / "runs" / f"{key}.json"
    record = json.loads(path.read_text())
    for epoch in record["history"]:
        epoch["device"] = "Other CPU (2 threads)"
    path.write_text(json.dumps(record))
    assert main(["verify", key, "--epochs", "2", "--results-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"note: 1 of these runs (e.g. {key}) were trained on another device" in out
    assert f"stored on Other CPU (2 threads)): 2 epochs on {cpu_model(device_name(torch.device('cpu')))}" in out
    assert cpu_model("AMD EPYC (12 threads)") == "AMD EPYC" and cpu_model("NVIDIA H100") == "NVIDIA H100"


def test_outcome_rule():
    same, close, far = EpochValue(1, "loss", 0.5, 0.5), EpochValue(1, "loss", 0.5, 0.5 * (1 + TOLERANCE / 2)), \
        EpochValue(1, "loss", 0.5, 0.5 * (1 + 2 * TOLERANCE))
    assert outcome([same]) == "identical"
    assert outcome([same, close]) == "within tolerance"
    assert outcome([close, far]) == "differs"
    assert outcome([EpochValue(1, "loss", 0.5, float("nan"))]) == "differs"


def test_a_run_read_off_its_twin_is_covered_by_verifying_the_twin(tmp_path, capsys):
    root, (twin, derived) = _store(tmp_path, tiny(epochs=8), tiny(epochs=8, selection="early_stop", patience=1))
    assert json.loads((root / "runs" / f"{derived}.json").read_text())["provenance"]["derived_from"] == twin
    assert main(["verify", twin, "--results-dir", str(root)]) == 0
    log = last_verified(root)
    assert log[derived]["via"] == twin and log[derived]["outcome"] == "identical"


@pytest.mark.parametrize("argv, message", [
    (["nosuchkey"], "'nosuchkey' matches no stored run"),
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--epochs", "4"], "stores 3 epochs, fewer than the 4 to verify"),
    (["--all"], "give run keys, or --all / --group, not both"),
    (["--device", "cuda:9"], "cuda:9"),
])
def test_bad_requests_are_refused_before_any_training(tmp_path, capsys, monkeypatch, argv, message):
    root, (key,) = _store(tmp_path, tiny())
    monkeypatch.setattr("mmlrepro.verify.train", lambda *a, **k: pytest.fail("trained"))
    keys = [] if argv[0] == "nosuchkey" else [key]
    assert main(["verify", *keys, *argv, "--results-dir", str(root)]) == 2
    assert message in capsys.readouterr().err
    assert not (root / LOG_NAME).exists()


def test_a_store_without_paper_runs_has_nothing_to_verify_by_default(tmp_path, capsys):
    root, _ = _store(tmp_path, tiny())
    assert main(["verify", "--results-dir", str(root)]) == 2
    assert "no trained paper-profile run of table3, table2, figure3" in capsys.readouterr().err


def _record(config: RunConfig, s_per_epoch: float, derived_from: str = "") -> dict:
    history = [{"epoch": 1, "train_s": s_per_epoch, "eval_s": 0.0}]
    return {"key": catalogue_key(config), "config": config.to_dict(), "history": history,
            "provenance": {"derived_from": derived_from} if derived_from else {}}


def test_the_default_is_the_cheapest_trained_paper_run_of_each_artefact():
    t3_cheap = paper_config("gowalla", "mf", "mse")                         # Table 3 only
    both = paper_config("yelp2018", "mf", "ccl")                            # Table 2 and Table 3
    simplex = paper_config("yelp2018", "simplex", "ccl")                    # Table 2
    derived = paper_config("yelp2018", "mf", "ccl", selection="early_stop")  # Table 2, read off `both`
    fig3 = paper_config("yelp2018", "mf", "ccl", n_negatives=10)            # Figure 3
    quick = paper_config("gowalla", "mf", "bpr", profile="quick")           # Table 3, quick
    records = [_record(t3_cheap, 40), _record(both, 50), _record(simplex, 70), _record(fig3, 25),
               _record(derived, 1, derived_from=catalogue_key(both)), _record(quick, 1)]
    key = {r["key"]: name for r, name in zip(records, ["t3", "both", "simplex", "fig3", "derived", "quick"],
                                             strict=True)}
    assert [key[r["key"]] for r in choose(records)] == ["t3", "both", "fig3"]
    assert [key[r["key"]] for r in choose(records, groups=["table2"])] == ["both"]
    assert [key[r["key"]] for r in choose(records, all_runs=True, groups=["table2"])] == ["both", "simplex"]
    assert {key[r["key"]] for r in choose(records, all_runs=True)} == {"t3", "both", "simplex", "fig3"}
    with pytest.raises(ValueError, match="unknown group 'table9'"):
        choose(records, groups=["table9"])


@pytest.mark.real_data
def test_one_epoch_of_the_cheapest_stored_paper_run_verifies(tmp_path, data_dir):
    """The CI check: one epoch of the stored Yelp2018 MF + CCL, N = 10 paper run (trained on an
    Intel Xeon at 2 threads) agrees when trained again here (identical on the same CPU class and
    thread count; within TOLERANCE across classes, docs/cpu_profiles.md)."""
    (tmp_path / "runs").mkdir()
    shutil.copy(COMMITTED_STORE / "runs" / f"{CI_RUN}.json", tmp_path / "runs")
    (result,) = verify([CI_RUN], epochs=1, results_dir=tmp_path, data_dir=str(data_dir), log=None)
    assert result.outcome in ("identical", "within tolerance"), result.lines()
