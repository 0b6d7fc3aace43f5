"""Trainer: learning, determinism, resume, NaN handling, early stopping, the exact fast step."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmlrepro.step as step_mod
import mmlrepro.train as train_mod
from mmlrepro import selection
from mmlrepro.check import compare_steps
from mmlrepro.checkpoint import FORMAT
from mmlrepro.config import RunConfig
from mmlrepro.data import synthetic
from mmlrepro.devices import run_device
from mmlrepro.losses import get_loss
from mmlrepro.metrics import PerUser, evaluate
from mmlrepro.results import ResultsStore
from mmlrepro.step import batch_loss
from mmlrepro.train import NonFiniteLossError, RunInterrupted, build_model, train

SYNTHETIC_FP = synthetic(300, 400).fingerprint  # the data of small_config()

CCL = {"margin": 0.5, "neg_weight": 10.0}


def small_config(**changes) -> RunConfig:
    base = dict(dataset="synthetic:300:400", loss="ccl", loss_params=CCL, n_negatives=20, batch_size=128,
                lr=1e-2, epochs=3, reg_lambda=1e-6, device="cpu", seed=7)
    base.update(changes)
    return RunConfig(**base)


def test_trainer_learns_well_above_untrained(tmp_path):
    config = small_config(epochs=6)
    dataset = synthetic(300, 400)
    torch.manual_seed(config.seed)
    untrained = evaluate(build_model(config, dataset), dataset)["recall@20"]
    result = train(config, checkpoint_dir=tmp_path)
    assert len(result.history) == 6
    assert result.best["recall@20"] > 2 * untrained + 0.05
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.best == max(result.history, key=lambda r: r["recall@20"])
    assert result.timings["train_s"] > 0 and result.timings["eval_s"] > 0
    assert not (tmp_path / f"{config.key(SYNTHETIC_FP)}.pt").exists()  # removed once the run completes


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    a = train(small_config(), checkpoint_dir=tmp_path)
    b = train(small_config(), checkpoint_dir=tmp_path)
    c = train(small_config(seed=8), checkpoint_dir=tmp_path)
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert strip(a.history) != strip(c.history)


def test_a_run_resumed_at_another_thread_count_records_each_stretch(tmp_path):
    config = small_config(epochs=3)
    threads = torch.get_num_threads()

    def kill(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    try:
        torch.set_num_threads(1)
        with pytest.raises(RunInterrupted):
            train(config, checkpoint_dir=tmp_path, checkpoint_every_s=0, on_epoch_end=kill)
        torch.set_num_threads(2)
        resumed = train(config, checkpoint_dir=tmp_path, checkpoint_every_s=0)
    finally:
        torch.set_num_threads(threads)
    one, two = (r["device"] for r in resumed.history[1:3])
    assert one.endswith("(1 threads)") and two.endswith("(2 threads)")
    assert resumed.history[0]["device"] == one
    assert resumed.device == f"{one} (epochs 1–2); {two} (epoch 3)"
    twin = selection.early_stop_from_history(resumed, config.replace(selection="early_stop", patience=1))
    assert twin.device == run_device(twin.history)


def test_run_device_names_one_device_once_and_falls_back_for_old_records():
    assert run_device([{"epoch": 1, "device": "A"}, {"epoch": 2, "device": "A"}]) == "A"
    assert run_device([{"epoch": 1}, {"epoch": 2}], fallback="old") == "old"
    assert run_device([{"epoch": 1}, {"epoch": 2, "device": "B"}], fallback="old") == "old (epoch 1); B (epoch 2)"
    assert run_device([], fallback="old") == "old"


def test_resume_after_kill_gives_identical_metrics(tmp_path):
    config = small_config(epochs=8, min_delta=0.02, patience=1)   # its "Y" twin stops after epoch 6
    full = train(config, checkpoint_dir=tmp_path / "full")

    def kill(epoch, record):
        if epoch == 7:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match="checkpoint of epoch 7 is kept"):
        train(config, checkpoint_dir=tmp_path / "killed", checkpoint_every_s=0, on_epoch_end=kill)
    assert (tmp_path / "killed" / f"{config.key(SYNTHETIC_FP)}.pt").exists()
    seen = []
    resumed = train(config, checkpoint_dir=tmp_path / "killed", checkpoint_every_s=0,
                    on_epoch_end=lambda e, r: seen.append(e))
    assert seen == [8]  # only the missing epoch ran
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert full.per_user.early_stop is not None   # "Y"'s values, fixed before the kill, come from the checkpoint
    for got, want in ((resumed.per_user, full.per_user), (resumed.per_user.early_stop, full.per_user.early_stop)):
        for name in want.values:
            np.testing.assert_array_equal(got.values[name], want.values[name])


def poisoned_ccl(is_bad):
    """A ``get_loss`` stand-in: CCL whose value turns NaN on the calls where ``is_bad(call)``,
    and the count of its calls."""
    calls = {"n": 0}
    real = get_loss("ccl", **CCL)

    def make(name, **hp):
        def loss(pos, neg, users=None):
            calls["n"] += 1
            value = real(pos, neg, users)
            return value * float("nan") if is_bad(calls["n"]) else value
        return loss
    return make, calls


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    poisoned, _ = poisoned_ccl(lambda call: call == 5)

    config = small_config(epochs=3, batch_size=1024)  # 300 users × ~16 rows → 4 steps an epoch
    steps_per_epoch = -(-len(synthetic(300, 400).train_items()) // 1024)
    monkeypatch.setattr(train_mod, "get_loss", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        train(config, checkpoint_dir=tmp_path, checkpoint_every_s=0)
    epoch, step = divmod(5 - 1, steps_per_epoch)
    assert f"epoch {epoch + 1}, step {step + 1}" in str(err.value)
    assert (tmp_path / f"{config.key(SYNTHETIC_FP)}.pt").exists() == (epoch >= 1)
    assert (f"the last checkpoint (epoch {epoch})" if epoch >= 1 else "no checkpoint was written") in str(err.value)


def test_checkpoints_are_written_at_most_every_checkpoint_every_s(tmp_path):
    def saved_epochs(every_s: float) -> list[int]:
        """After each epoch, the epoch the checkpoint on disk holds (0: none)."""
        path = tmp_path / str(every_s)
        seen = []

        def look(epoch, record):
            files = list(path.glob("*.pt"))
            seen.append(len(torch.load(files[0], weights_only=False)["history"]) if files else 0)

        train(small_config(epochs=4), checkpoint_dir=path, checkpoint_every_s=every_s, on_epoch_end=look)
        assert not any(path.glob("*.pt"))  # deleted when the run completes
        return seen

    assert saved_epochs(0) == [1, 2, 3, 3]  # none after the last epoch: the run is done
    assert saved_epochs(3600) == [0, 0, 0, 0]  # a short run writes none


def test_negative_checkpoint_interval_is_refused_before_any_data_is_loaded(tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the data was loaded before checkpoint_every_s was checked")

    monkeypatch.setattr("mmlrepro.train.load_run_dataset", no_loading)
    with pytest.raises(ValueError, match="checkpoint_every_s"):
        train(small_config(), checkpoint_dir=tmp_path, checkpoint_every_s=-1)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_early_stopping_stops_at_the_right_epoch(tmp_path, monkeypatch):
    sequence = iter([0.10, 0.20, 0.20, 0.15, 0.19, 0.30, 0.40])

    def scripted(model, dataset, ks=(20, 50), per_user=False, **kw):
        v = next(sequence)
        metrics = {"recall@20": v, "ndcg@20": v, "recall@50": v, "ndcg@50": v}
        return (metrics, None) if per_user else metrics

    monkeypatch.setattr(train_mod, "evaluate", scripted)
    result = train(small_config(epochs=7, selection="early_stop"), checkpoint_dir=tmp_path)
    # best 0.20 at epoch 2; epochs 3, 4, 5 do not improve by more than 1e-6: stop after 5
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    assert result.best["epoch"] == 2 and result.stopped_early


def test_lr_reduce_cuts_lr_on_non_improving_epochs(tmp_path, monkeypatch):
    sequence = iter([0.1, 0.2, 0.15, 0.25])

    def scripted(model, dataset, ks=(20, 50), per_user=False, **kw):
        v = next(sequence)
        metrics = {"recall@20": v, "ndcg@20": v, "recall@50": v, "ndcg@50": v}
        return (metrics, None) if per_user else metrics

    monkeypatch.setattr(train_mod, "evaluate", scripted)
    result = train(small_config(epochs=4, lr_reduce=True, lr=1e-3), checkpoint_dir=tmp_path)
    assert [r["lr"] for r in result.history] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4])


def test_honest_mode_selects_on_validation_and_tests_once(tmp_path):
    result = train(small_config(selection="honest", epochs=3), checkpoint_dir=tmp_path)
    assert set(result.test) == {"recall@20", "ndcg@20", "recall@50", "ndcg@50"}
    assert result.test["recall@20"] > 0
    assert result.best == max(result.history, key=lambda r: r["recall@20"])


@pytest.mark.parametrize("bad, word", [
    (dict(n_negatives=0), "n_negatives"), (dict(batch_size=-1), "batch_size"), (dict(lr=0.0), "lr"),
    (dict(epochs=0), "epochs"), (dict(dropout=1.0), "dropout"), (dict(selection="best"), "selection"),
    (dict(reg_form="l1"), "reg_form"), (dict(reg_lambda=-1.0), "reg_lambda"), (dict(model="lightgcn"), "model"),
    (dict(loss="nope"), "nope"), (dict(loss_params={"margin": 2.0, "neg_weight": 1.0}), "margin"),
    (dict(monitor="auc"), "monitor"), (dict(grad_clip=0.0), "grad_clip"), (dict(device="tpu"), "device"),
    (dict(model_params={"gate": 0.5}), "model_params"), (dict(dataset=""), "dataset"),
    (dict(user_subsample=0), "user_subsample"), (dict(holdout_fraction=1.0), "holdout_fraction"),
])
def test_runconfig_rejects_bad_values(bad, word):
    with pytest.raises(ValueError, match=word):
        small_config(**bad)


def test_key_is_stable_across_processes_and_ignores_device_and_group():
    config = small_config(loss="mml", loss_params={"margins": [0.7, 0.9], "weights": [0.2, 0.8],
                                                   "pos_weight": 1.0, "neg_weight": 100.0})
    code = ("from mmlrepro.config import RunConfig; print(RunConfig(dataset='synthetic:300:400', loss='mml', "
            "loss_params={'neg_weight': 100.0, 'pos_weight': 1.0, 'weights': [0.2, 0.8], 'margins': [0.7, 0.9]}, "
            "n_negatives=20, batch_size=128, lr=1e-2, epochs=3, reg_lambda=1e-6, device='cuda', seed=7, "
            f"group='x').key({SYNTHETIC_FP!r}))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == config.key(SYNTHETIC_FP)
    assert config.key(SYNTHETIC_FP) != config.replace(seed=8).key(SYNTHETIC_FP)
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("model_kind", ["mf", "simplex"])
@pytest.mark.parametrize("reg, clip", [(1e-2, 10.0), (0.0, None), (1e-4, 1e-3), (1e-2, None)])
def test_exact_step_matches_plain_pytorch_loop(model_kind, reg, clip):
    """The fast step (fused gathered cosine, sparse rows, λ·W buffer, clip as Adam's grad
    scale) against the textbook loop: F.normalize + bmm scores with dense gradients, the
    penalty in the loss, clip_grad_norm_, torch.optim.Adam."""
    hp = {"margins": [0.1, 0.5], "weights": [0.3, 0.7], "pos_weight": 1.0, "neg_weight": 50.0}
    fast, ref, losses = compare_steps(model_kind, "mml", hp, reg, clip)
    for a, b in losses:
        assert a == pytest.approx(b, rel=1e-6, abs=1e-12)  # the fused kernel takes the clip in fp32
    for p, q in zip(fast.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-9)  # params ~1e-3: 1e-6 relative to scale


def test_clip_really_triggers_in_the_clipped_case():
    """With tiny init the cosine gradients are huge: the 1e-3 clip must be active."""
    dataset = synthetic(120, 150, seed=3)
    config = RunConfig(dataset="synthetic", loss="ccl", loss_params={"margin": 0.1, "neg_weight": 50.0},
                       dropout=0.0, device="cpu")
    torch.manual_seed(0)
    model = build_model(config, dataset)
    users, pos = torch.arange(32), torch.arange(32)
    neg = torch.randint(0, 150, (32, 10))
    loss = batch_loss(model, get_loss("ccl", margin=0.1, neg_weight=50.0), config, users, pos, neg)
    loss.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm > 10.0


def test_early_stop_read_off_the_paper_twin_equals_training_it(tmp_path):
    paper = train(small_config(epochs=8, min_delta=0.02, patience=1), checkpoint_dir=tmp_path)
    config = small_config(epochs=8, min_delta=0.02, patience=1, selection="early_stop")
    trained = train(config, checkpoint_dir=tmp_path)
    store = ResultsStore(tmp_path / "store")
    store.put(paper)                                      # the "Y" values travel in the "N" file
    stored = store.get(paper.config, paper.data_fingerprint)
    derived = selection.early_stop_from_history(stored, config, stored.per_user)
    assert trained.stopped_early and len(trained.history) < 8  # the rule did cut the run short
    # "N" selects a later epoch than "Y", so it kept "Y"'s per-user values beside its own
    assert paper.best["epoch"] > trained.best["epoch"] and trained.per_user.early_stop is None
    for name, values in trained.per_user.values.items():
        np.testing.assert_array_equal(paper.per_user.early_stop.values[name], values)
        np.testing.assert_allclose(derived.per_user.values[name], values, atol=1e-5, rtol=0)  # uint16 file
    assert derived.per_user.early_stop is None
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]  # noqa: E731
    assert strip(derived.history) == strip(trained.history)
    assert strip([derived.best]) == strip([trained.best])
    assert derived.stopped_early and derived.config == config
    assert derived.timings["train_s"] == pytest.approx(sum(r["train_s"] for r in derived.history))


def test_early_stop_from_history_that_never_stops_keeps_every_epoch(tmp_path):
    paper = train(small_config(epochs=3, patience=5), checkpoint_dir=tmp_path)
    derived = selection.early_stop_from_history(paper, small_config(epochs=3, patience=5, selection="early_stop"),
                                                paper.per_user)
    assert derived.history == paper.history and derived.best == paper.best and not derived.stopped_early
    assert paper.per_user.early_stop is None                  # the same epoch: the twin's own values
    assert derived.per_user.values is paper.per_user.values


@pytest.mark.parametrize("changes, word", [
    (dict(selection="early_stop", lr_reduce=True), "lr_reduce"),
    (dict(selection="early_stop", seed=8), "twin"),
    (dict(selection="honest"), "early_stop"),
])
def test_early_stop_from_history_refuses_what_it_cannot_derive(tmp_path, changes, word):
    paper = train(small_config(epochs=2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=word):
        selection.early_stop_from_history(paper, small_config(epochs=2, **changes))


def test_batch_penalty_equals_the_gathered_rows_form_in_value_and_gradient():
    config = small_config(loss="bsl", loss_params={"tau1": 0.11, "tau2": 1.1, "mode": "multi"},
                          reg_form="batch", reg_lambda=1e-3)
    dataset = synthetic(300, 400)
    torch.manual_seed(0)
    model = build_model(config, dataset).double()
    users = torch.randint(300, (64,))
    users[:8] = users[0]  # repeated users and items, as in real batches
    pos, neg = torch.randint(400, (64,)), torch.randint(400, (64, 30))
    neg[:, :5] = pos[:, None]

    gathered = 1e-3 * (model.user_emb[users].pow(2).sum() + model.item_emb[pos].pow(2).sum()
                       + model.item_emb[neg].pow(2).sum()) / (2 * 64)
    expected = torch.autograd.grad(gathered, [model.user_emb, model.item_emb])
    value = step_mod.batch_penalty(model, users, pos, neg, 1e-3)
    grads = torch.autograd.grad(value, [model.user_emb, model.item_emb])
    assert value.item() == pytest.approx(gathered.item(), rel=1e-12)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-18)


def test_select_best_is_the_min_delta_rule():
    history = [{"epoch": e, "recall@20": v} for e, v in enumerate([0.1, 0.1000005, 0.2, 0.19, 0.2000001], 1)]
    assert selection.select_best(history, "recall@20", 1e-6) == 2  # 0.1000005 and 0.2000001 are no improvement
    assert selection.select_best(history, "recall@20", 0.0) == 4


def _scripted_with_weights(values, seen):
    """An evaluate() that returns ``values`` in turn and records the weights it was called with."""
    sequence = iter(values)

    def scripted(model, dataset, ks=(20, 50), per_user=False, **kw):
        seen.append(model.user_emb.detach().clone())
        v = next(sequence)
        metrics = {"recall@20": v, "ndcg@20": v, "recall@50": v, "ndcg@50": v}
        return (metrics, None) if per_user else metrics
    return scripted


def test_honest_mode_tests_the_weights_of_the_epoch_it_reports(tmp_path, monkeypatch):
    """Defect 5: epoch 2 beats epoch 1 by less than min_delta, so epoch 1 is reported and tested."""
    seen = []
    monkeypatch.setattr(train_mod, "evaluate", _scripted_with_weights([0.1, 0.1000005, 0.05, 0.3], seen))
    result = train(small_config(epochs=3, selection="honest"), checkpoint_dir=tmp_path)
    assert result.best["epoch"] == 1
    assert torch.equal(seen[-1], seen[0]) and not torch.equal(seen[-1], seen[1])  # the test used epoch 1's weights


def test_lr_reduce_reloads_the_weights_of_the_selected_epoch(tmp_path, monkeypatch):
    """Defect 5: lr_reduce's reload follows the same rule (epoch 2 is no improvement: back to epoch 1)."""
    seen = []
    monkeypatch.setattr(train_mod, "evaluate", _scripted_with_weights([0.1, 0.1000005, 0.2], seen))
    result = train(small_config(epochs=3, lr_reduce=True, lr=1e-3), checkpoint_dir=tmp_path)
    assert [r["lr"] for r in result.history] == pytest.approx([1e-3, 1e-3, 1e-4])
    assert result.best["epoch"] == 3


def test_exclude_positives_goes_through_the_one_sampler_and_changes_the_run(tmp_path, monkeypatch):
    """Defect 2: negatives come from sampling.sample_negatives; with exclude_positives none is a train item."""
    import mmlrepro.sampling as sampling

    data = synthetic(300, 400)
    positives = {(u, i) for u, i in zip(data.train_users().tolist(), data.train_items().tolist(), strict=True)}
    drawn = []

    def recording(*args, **kwargs):
        neg = sampling.sample_negatives(*args, **kwargs)
        drawn.append((kwargs.get("users"), neg, kwargs.get("exclude") is not None))
        return neg

    monkeypatch.setattr(train_mod, "sample_negatives", recording)
    excluded = train(small_config(epochs=1, exclude_positives=True), checkpoint_dir=tmp_path)
    assert drawn and all(flag for _, _, flag in drawn)
    hits = sum((u, i) in positives for users, neg, _ in drawn for u, row in zip(users.tolist(), neg.tolist(),
                                                                                   strict=True) for i in row)
    assert hits == 0
    drawn.clear()
    plain = train(small_config(epochs=1), checkpoint_dir=tmp_path)
    assert drawn and not any(flag for _, _, flag in drawn)
    assert excluded.history[0]["loss"] != plain.history[0]["loss"]


def test_a_broken_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path):
    config = small_config(epochs=2)
    path = tmp_path / f"{config.key(SYNTHETIC_FP)}.pt"
    path.write_bytes(b"garbage")
    lines = []
    result = train(config, checkpoint_dir=tmp_path, log=lines.append)
    assert len(result.history) == 2 and any("is broken" in line and str(path) in line for line in lines)
    assert len(list(tmp_path.glob("*.set-aside-*"))) == 1 and not path.exists()


def test_per_user_values_of_the_selected_epoch_come_with_the_result(tmp_path):
    result = train(small_config(epochs=3), checkpoint_dir=tmp_path)
    for metric in ("recall@20", "ndcg@20", "recall@50", "ndcg@50"):
        assert result.per_user.values[metric].mean() == pytest.approx(result.best[metric], rel=1e-5)
    honest = train(small_config(epochs=2, selection="honest"), checkpoint_dir=tmp_path)
    assert honest.per_user.values["recall@20"].mean() == pytest.approx(honest.test["recall@20"], rel=1e-5)


def test_nan_loss_off_the_cpu_stops_within_the_check_interval(tmp_path, monkeypatch):
    """Issue 19: where the on-device flag is read only every K steps (a GPU), a NaN at step 3
    still stops the run by step K = 5 of the same epoch, naming step 3."""
    poisoned, calls = poisoned_ccl(lambda call: call >= 3)

    assert train_mod.finite_check_every(torch.device("cpu")) == 1
    assert train_mod.finite_check_every(torch.device("cuda")) == train_mod.FINITE_CHECK_STEPS
    config = small_config(epochs=2, batch_size=128)  # ~38 steps an epoch
    monkeypatch.setattr(train_mod, "get_loss", poisoned)
    monkeypatch.setattr(train_mod, "finite_check_every", lambda device: 5)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 3;"):
        train(config, checkpoint_dir=tmp_path)
    assert calls["n"] == 5


# --------------------------------------------------------------------------------------------
# checkpoints written before mmlrepro.checkpoint existed (issue 38): runs training then resume

LEGACY_CHECKPOINTS = Path(__file__).parent / "data" / "checkpoints"


def legacy_config(name: str) -> RunConfig:
    """The runs of tests/data/checkpoints/checkpoint_<name>.pt: killed after epoch 3 by the trainer
    of commit 9cb6699 (checkpoint_every_s=0), before the checkpoint module and mmlrepro.per_user."""
    base = dict(dataset="synthetic:60:80", loss="ccl", loss_params={"margin": 0.5, "neg_weight": 10.0},
                n_negatives=5, batch_size=64, lr=5e-2, epochs=5, dim=8, reg_lambda=1e-6, device="cpu",
                seed=7, min_delta=0.02, patience=1)
    if name == "lr_reduce":
        base.update(lr_reduce=True, selection="early_stop", patience=3)
    return RunConfig(**base)


@pytest.mark.parametrize("name", ["paper", "lr_reduce"])
def test_a_checkpoint_of_the_old_format_loads_and_resumes_to_the_uninterrupted_run(tmp_path, name):
    config = legacy_config(name)
    key = config.key(synthetic(60, 80).fingerprint)
    legacy = torch.load(LEGACY_CHECKPOINTS / f"checkpoint_{name}.pt", weights_only=False)
    if legacy["key"] != key:
        pytest.skip("this numpy draws other synthetic data, so the fixture belongs to another key")
    assert tuple(legacy) == FORMAT                       # the format the new code writes, too
    assert isinstance(legacy["best_per_user"], PerUser)  # pickled as mmlrepro.metrics.PerUser
    (tmp_path / "resumed").mkdir()
    shutil.copy(LEGACY_CHECKPOINTS / f"checkpoint_{name}.pt", tmp_path / "resumed" / f"{key}.pt")
    seen = []
    resumed = train(config, checkpoint_dir=tmp_path / "resumed", on_epoch_end=lambda e, r: seen.append(e), log=None)
    full = train(config, checkpoint_dir=tmp_path / "full", log=None)
    assert seen == list(range(4, len(full.history) + 1))   # only the missing epochs ran
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s") and k != "device"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert resumed.best == {**full.best, **{k: resumed.best[k] for k in ("train_s", "eval_s", "device")}}
    assert (resumed.per_user.early_stop is None) == (full.per_user.early_stop is None)
    for got, want in ((resumed.per_user, full.per_user), (resumed.per_user.early_stop, full.per_user.early_stop)):
        if want is not None:
            assert got.epoch == want.epoch
            for metric in want.values:
                np.testing.assert_array_equal(got.values[metric], want.values[metric])


def test_the_checkpoint_written_has_the_old_format(tmp_path):
    config = legacy_config("paper")

    def kill(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        train(config, checkpoint_dir=tmp_path, checkpoint_every_s=0, on_epoch_end=kill, log=None)
    written = torch.load(tmp_path / f"{config.key(synthetic(60, 80).fingerprint)}.pt", weights_only=False)
    assert tuple(written) == FORMAT
    assert set(written["rng"]) == {"cpu"} and isinstance(written["lr"], float)
    assert [r["epoch"] for r in written["history"]] == [1, 2] and set(written["timings"]) == {"train_s", "eval_s"}
