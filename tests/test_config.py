"""RunConfig and the run identity (issue 14): one run, one key; every field changes the run or is a label."""

from __future__ import annotations

import dataclasses

import pytest

from mmlrepro.config import KEY_SCHEMA, LABEL_FIELDS, RunConfig
from mmlrepro.data import synthetic
from mmlrepro.train import train

DATA = synthetic(120, 150, seed=3)
FP = DATA.fingerprint
BASE = dict(dataset="synthetic:120:150", loss="ccl", n_negatives=10, batch_size=256, lr=1e-2, epochs=2,
            device="cpu", seed=7)


def config(**changes) -> RunConfig:
    return RunConfig(**{**BASE, **changes})


def test_one_run_has_one_key():
    """Defect 4: ``{}``, the defaults written out and 150 vs 150.0 are one run; so are labels."""
    keys = {config(loss_params={}).key(FP),
            config(loss_params={"margin": 0.9, "neg_weight": 150.0}).key(FP),
            config(loss_params={"margin": 0.9, "neg_weight": 150}).key(FP),
            config(lr=0.01, reg_lambda=1e-8).key(FP),
            config(profile="quick", group="table3").key(FP),
            config(holdout_fraction=0.3).key(FP),          # applies to honest only
            config(patience=9).key(FP),                    # applies to early_stop only
            config(dataset="/some/folder/with/the/same/data").key(FP)}
    assert len(keys) == 1


def test_key_names_the_data_and_the_schema():
    """Defect 3: the same config on other data is another run."""
    other = synthetic(120, 150, seed=4).fingerprint
    assert FP != other and config().key(FP) != config().key(other)
    identity = config().identity(FP)
    assert identity["data"] == FP and identity["schema"] == KEY_SCHEMA   # schema 4 kept schema 3's
    assert not set(LABEL_FIELDS) & set(identity)
    with pytest.raises(ValueError, match="fingerprint"):
        config().key("")


def test_fields_that_apply_only_to_some_runs_split_keys_only_there():
    assert config(selection="early_stop", patience=1).key(FP) != config(selection="early_stop").key(FP)
    assert config(selection="honest", holdout_fraction=0.3).key(FP) != config(selection="honest").key(FP)
    assert config(reg_lambda=0.0, reg_form="batch").key(FP) == config(reg_lambda=0.0).key(FP)
    assert config(dropout=0.0, dropout_placement="before_norm").key(FP) == config(dropout=0.0).key(FP)


def test_loss_and_model_parameters_are_stored_with_their_defaults_merged():
    c = config(loss="mml", loss_params={"neg_weight": 500})
    assert c.loss_hp == {"margins": [0.7, 0.8, 0.9], "weights": [0.1, 0.15, 0.75], "pos_weight": 1.0,
                         "neg_weight": 500.0}
    s = config(model="simplex", model_params={"gate": 1})
    assert s.model_hp["gate"] == 1.0 and s.model_hp["aggregator"] == "mean"
    assert RunConfig.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("bad, word", [
    (dict(dropout="0.1"), "dropout"), (dict(reg_lambda="1e-8"), "reg_lambda"), (dict(device=None), "device"),
    (dict(user_subsample=True), "user_subsample"), (dict(lr_reduce="yes"), "lr_reduce"),
    (dict(device="mps"), "MPS"), (dict(device="cpu:abc"), "device"), (dict(profile="fast"), "profile"),
    (dict(model="mf", model_params={"gate": 0.5}), "MF takes no model parameters"),
    (dict(model="simplex", model_params={"gate": 2.0}), "gate"), (dict(seed=1.5), "seed"),
    (dict(min_delta=float("nan")), "min_delta"), (dict(loss_params="margin=0.9"), "loss_params"),
])
def test_bad_values_are_value_errors_naming_the_field(bad, word):
    with pytest.raises(ValueError, match=word):
        config(**bad)


# Contract: every field either changes what a run computes (its history, selected epoch or test
# numbers) or is declared a label (LABEL_FIELDS: not in the key). Each entry: the base changes
# under which the field applies, and another value for it.
CONTRACT = {
    "dataset": ({}, "synthetic:121:150"),
    "model": ({}, "simplex"),
    "loss": ({"loss": "hinge"}, "ccl"),
    "loss_params": ({}, {"margin": 0.3, "neg_weight": 10.0}),
    "model_params": ({"model": "simplex"}, {"aggregator": "attention", "gate": 0.8}),
    "n_negatives": ({}, 5),
    "batch_size": ({}, 64),
    "lr": ({}, 5e-3),
    "epochs": ({}, 3),
    "dim": ({}, 16),
    "dropout": ({}, 0.3),
    "dropout_placement": ({}, "before_norm"),
    "reg_form": ({"reg_lambda": 1e-2}, "batch"),
    "reg_lambda": ({}, 1e-2),
    "grad_clip": ({}, 1e-3),
    "seed": ({}, 8),
    "selection": ({}, "honest"),
    "monitor": ({"epochs": 4, "lr": 0.2}, "ndcg@50"),
    "patience": ({"selection": "early_stop", "epochs": 4, "min_delta": 1.0}, 1),
    "min_delta": ({"epochs": 3}, 1.0),
    "lr_reduce": ({"epochs": 3, "min_delta": 1.0}, True),
    "holdout_fraction": ({"selection": "honest"}, 0.3),
    "exclude_positives": ({}, True),
    "user_subsample": ({}, 60),
}


def _outcome(c: RunConfig, tmp_path) -> tuple:
    data = synthetic(121, 150, seed=3) if c.dataset == "synthetic:121:150" else DATA
    r = train(c, dataset=data, checkpoint_dir=tmp_path, log=None)
    strip = [{k: v for k, v in e.items() if not k.endswith("_s")} for e in r.history]
    return strip, r.best["epoch"], r.test


def test_every_field_is_in_the_contract():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert fields == set(CONTRACT) | set(LABEL_FIELDS)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_every_field_changes_the_run(name, tmp_path):
    base_changes, other = CONTRACT[name]
    base = config(**base_changes)
    changed = base.replace(**{name: other})
    assert _outcome(base, tmp_path) != _outcome(changed, tmp_path), f"{name} changes nothing"
    fp = synthetic(121, 150, seed=3).fingerprint if name == "dataset" else FP
    assert base.key(FP) != changed.key(fp), f"{name} changes the run but not its key"


@pytest.mark.parametrize("name, other", [("profile", "quick"), ("group", "table3")])
def test_labels_change_neither_the_run_nor_the_key(name, other, tmp_path):
    base = config()
    changed = base.replace(**{name: other})
    assert base.key(FP) == changed.key(FP)
    assert _outcome(base, tmp_path) == _outcome(changed, tmp_path)


# SimpleX parameters the forward pass never reads (schema 3): (base model_params, the change).
UNREAD_SIMPLEX = [({"gate": 1.0}, {"history_cap": 2}),                       # p_u not computed at g = 1
                  ({"gate": 1.0, "aggregator": "attention"}, {"padding_softmax_bug": False}),
                  ({"gate": 0.5}, {"padding_softmax_bug": False})]           # mean: no softmax
# ...and those it does, even at g = 1 (W and the history table shift the seeded draws).
READ_SIMPLEX = [({"gate": 1.0}, {"aggregator": "attention"}),
                ({"gate": 1.0}, {"separate_history_table": True}),
                ({"gate": 0.5, "aggregator": "attention"}, {"padding_softmax_bug": False}),
                ({"gate": 0.5}, {"history_cap": 2})]


@pytest.mark.parametrize("base, change", UNREAD_SIMPLEX)
def test_simplex_parameters_that_are_not_read_share_the_key_and_the_run(base, change, tmp_path):
    a = config(model="simplex", model_params=base)
    b = config(model="simplex", model_params={**base, **change})
    assert a.key(FP) == b.key(FP) and a.model_hp != b.model_hp   # the config still shows them
    assert _outcome(a, tmp_path) == _outcome(b, tmp_path)


@pytest.mark.parametrize("base, change", READ_SIMPLEX)
def test_simplex_parameters_that_are_read_split_the_key_and_the_run(base, change, tmp_path):
    a = config(model="simplex", model_params=base)
    b = config(model="simplex", model_params={**base, **change})
    assert a.key(FP) != b.key(FP)
    assert _outcome(a, tmp_path) != _outcome(b, tmp_path)
