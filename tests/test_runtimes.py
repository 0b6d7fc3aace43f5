"""mmlrepro.runtimes: the README's runtimes from the stored timings, on hand-built records and on
the committed store (read only)."""

from pathlib import Path

import pandas as pd
import pytest

from mmlrepro import runtimes

STORE = Path(__file__).resolve().parents[1] / "results"
CPU1, CPU2 = "AMD EPYC (1 threads)", "Intel(R) Xeon(R) Processor (2 threads)"


def _run(dataset="gowalla", model="mf", loss="bpr", n=100, epochs_run=100, s_per_epoch=60.0,
         device=CPU1, profile="paper", derived="", epochs=100):
    return {"dataset": dataset, "model": model, "loss": loss, "n_negatives": n,
            "profile": profile, "derived_from": derived, "device": device, "epochs": epochs,
            "epochs_run": epochs_run, "train_s": 0.9 * s_per_epoch * epochs_run,
            "eval_s": 0.1 * s_per_epoch * epochs_run}


def test_only_trained_cpu_paper_runs_count():
    runs = pd.DataFrame([_run(), _run(device="NVIDIA H100 80GB HBM3"), _run(profile="quick"),
                         _run(derived="0123456789abcdef", epochs_run=20)])
    kept = runtimes.trained_cpu_runs(runs)
    assert len(kept) == 1 and kept["s_per_epoch"].tolist() == pytest.approx([60.0])
    assert runtimes.trained_cpu_runs(pd.DataFrame()).empty


def test_paper_run_minutes_hand_worked():
    runs = pd.DataFrame([_run(s_per_epoch=60.0), _run(s_per_epoch=90.0, device=CPU2),
                         _run(s_per_epoch=120.0, device=f"{CPU1} (epochs 1–3); {CPU2} (epochs 4–100)"),
                         _run(n=10, s_per_epoch=6.0),                  # other N
                         _run(epochs_run=30, s_per_epoch=600.0)])      # not complete
    one = runtimes.paper_run(runs)
    assert (one["runs"], one["median"], one["min"], one["max"]) == (3, 150.0, 100.0, 200.0)
    assert one["cpus"] == ["AMD EPYC", "Intel(R) Xeon(R) Processor"] and one["threads"] == [1, 2]
    assert runtimes.paper_run(runs, n_negatives=10)["median"] == pytest.approx(10.0)
    assert runtimes.paper_run(pd.DataFrame())["runs"] == 0


def _record(dataset="gowalla", loss="bpr", n=100, s_per_epoch=60.0, device=CPU1, epochs=100):
    from mmlrepro.catalogue import catalogue_key, paper_config

    config = paper_config(dataset, "mf", loss, n_negatives=n)
    return {"key": catalogue_key(config), "config": config.to_dict(), "device": device,
            "history": [{"epoch": e} for e in range(1, epochs + 1)], "provenance": {},
            "timings": {"train_s": 0.9 * s_per_epoch * epochs, "eval_s": 0.1 * s_per_epoch * epochs}}


def test_paper_profile_costs_each_planned_run_by_the_one_rule():
    # Table 3, one seed: 7 losses x 2 datasets at N = 100. Gowalla BPR is stored (60 s an epoch,
    # its kind); the other Gowalla losses get the line in N through Gowalla MF's stored runs
    # (N = 100 at 60 s, N = 800 at 200 s: 60 s at N = 100); a GPU run is not a CPU timing;
    # Yelp2018 has no stored CPU run: not counted.
    records = [_record(), _record(loss="mml", n=800, s_per_epoch=200.0),
               _record(dataset="yelp2018", device="NVIDIA H100 80GB HBM3")]
    whole = runtimes.paper_profile(records, seeds={"table3": 1})
    assert whole["runs"] == 14 and whole["unknown"] == 7
    assert whole["hours"] == pytest.approx(7 * 100 * 60 / 3600)


def test_the_plan_leaves_out_read_off_runs():
    table2 = runtimes.planned_training({"table2": 1})
    assert len(table2) == 8 and {c.selection for c in table2} == {"paper"}


def test_summary_of_the_committed_store(tmp_path):
    text = runtimes.summary(STORE)
    assert text.startswith("One paper run (100 epochs, N = 100): median ")
    assert "The whole paper profile (" in text and "runs to train" in text
    (tmp_path / "runs").mkdir()
    assert runtimes.summary(tmp_path).startswith("No complete paper-profile run")


def test_device_names_parse_once():
    from mmlrepro.devices import cpu_model, cpu_threads, stretches

    both = "AMD EPYC (1 threads) (epochs 1–3); Intel(R) Xeon(R) Processor (2 threads) (epochs 4–100)"
    assert stretches(both) == ["AMD EPYC (1 threads)", "Intel(R) Xeon(R) Processor (2 threads)"]
    assert [cpu_model(d) for d in stretches(both)] == ["AMD EPYC", "Intel(R) Xeon(R) Processor"]
    assert [cpu_threads(d) for d in stretches(both)] == [1, 2]
    assert cpu_model("NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3" and cpu_threads("NVIDIA H100") is None
    assert runtimes._is_cpu(both) and not runtimes._is_cpu("NVIDIA H100; AMD EPYC (2 threads)")
