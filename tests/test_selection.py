"""The selection rule's module (issue 38): the comparison layer reads it without the trainer or torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmlrepro.catalogue import DATASETS, paper_config
from mmlrepro.config import RunConfig
from mmlrepro.reported import paper_stop_epoch, reported
from mmlrepro.selection import early_stop_best, early_stop_epochs, paper_monitor, select_best, stops


@pytest.mark.parametrize("module", ["mmlrepro.comparison", "mmlrepro.selection", "mmlrepro.config",
                                    "mmlrepro.results", "mmlrepro.per_user", "mmlrepro.preflight"])
def test_reading_modules_import_neither_the_trainer_nor_torch(module):
    code = (f"import sys, json, {module}; "
            "print(json.dumps({m: m in sys.modules for m in ('torch', 'mmlrepro.train', 'mmlrepro.step')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"torch": False, "mmlrepro.train": False, "mmlrepro.step": False}


@pytest.mark.parametrize("model", ["mf", "simplex"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_the_catalogue_selects_on_the_one_monitor_rule(dataset, model):
    assert paper_config(dataset, model, "ccl").monitor == paper_monitor(dataset, model)
    assert paper_monitor(dataset, None) == "recall@20"
    assert paper_monitor("gowalla", "simplex") == "ndcg@20"


def test_the_paper_stop_epochs_are_read_in_one_place():
    stops_ = reported()["table2_early_stop_epochs"]
    assert paper_stop_epoch("mf", "mml") == paper_stop_epoch("mf", "ccl") == stops_["mf"]
    assert paper_stop_epoch("simplex", "ccl") == stops_["simplex/ccl"]
    assert paper_stop_epoch("simplex", "mml") == stops_["simplex/mml"]


def test_the_stopping_rule_cuts_patience_epochs_after_the_selected_one():
    config = RunConfig(dataset="synthetic", selection="early_stop", patience=2, epochs=10)
    history = [{"epoch": e, "recall@20": r} for e, r in enumerate([0.1, 0.2, 0.2, 0.15, 0.3, 0.1, 0.1, 0.1], 1)]
    assert select_best(history, "recall@20", 1e-6) == 4
    assert not stops(history[:3], config) and stops(history[:3], config.replace(patience=1))
    assert early_stop_epochs(history, config) == 4          # epochs 3 and 4 do not improve on epoch 2
    assert early_stop_best(history, config) == 2
    assert early_stop_epochs(history, config.replace(patience=3)) == 8   # no epoch left to stop at
    assert early_stop_best(history, config.replace(patience=3)) == 5
    assert not stops(history, config.replace(selection="paper"))   # only early_stop runs stop
