"""A run's configuration and its identity (SPEC §3, §6, §8; issue 14).

:class:`RunConfig` is everything a user sets for one training run. It normalises itself on
construction: the loss and SimpleX parameters are merged with their defaults
(:data:`mmlrepro.loss_params.LOSS_DEFAULTS` and :data:`SIMPLEX_DEFAULTS`, which ``SimpleX``'s
signature takes) and the numbers are cast to the field's
type, so ``loss_params={}``, the same values written out, and ``150`` vs ``150.0`` are one
config. Bad values raise ``ValueError`` naming the field, before any data is loaded.

A run's **key** (:meth:`RunConfig.key`) is the hash of what it effectively computes:
:meth:`RunConfig.identity`, i.e. the normalised fields that apply to this run's model and
selection, without labels (``dataset`` name, ``profile``, ``group``) or the place it runs
(``device``), plus the fingerprint of the data it trains and is tested on
(:meth:`RunConfig.data_fingerprint`: that of its source data, :attr:`mmlrepro.data.Dataset.fingerprint`,
a content hash of the train and test interactions, for a run that uses them as they are; for a
run that subsamples users or carves an honest validation split, a hash of the source's
fingerprint, the subsample and the split, and the draw that made them, schema 4) and
:data:`KEY_SCHEMA`. Adding a field to ``RunConfig`` re-keys nothing as long as the field's
default is left out of the identity (see ``_DEFAULT_FREE``); changing what a key means bumps
the schema version, and :mod:`mmlrepro.migrate` re-keys the stored runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmlrepro.data import draw_id
from mmlrepro.devices import check_device_name
from mmlrepro.loss_params import check_loss_params

SCHEMA_VERSION = 4
# The "schema" in a key's identity: the store schema that last changed the identity's fields.
# Schema 4 changed only the data fingerprint of the runs that subsample or split their data
# (which re-keys them through "data"), so every run on its source data as it is, the paper
# profile's, keeps its schema-3 key.
KEY_SCHEMA = 3
# The seed of the quick profile's user subsample: every run of a group sees the same users
# whatever its own seed [assumed].
SUBSAMPLE_SEED = 0
# The catalogue's profiles (mmlrepro.catalogue); a run outside the catalogue is labelled "custom".
PROFILES = ("paper", "quick", "smoke")
MODELS = ("mf", "simplex")
SELECTIONS = ("paper", "early_stop", "honest")
REG_FORMS = ("full_table", "batch")
# Where dropout applies to a user vector: after its L2 norm (SPEC §3 default) or before it (BSL).
DROPOUT_PLACEMENTS = ("after_norm", "before_norm")


def metric_names(ks: Sequence[int] = (20, 50)) -> list[str]:
    """``["recall@20", "ndcg@20", "recall@50", "ndcg@50"]`` for ``ks = (20, 50)`` (SPEC §7)."""
    return [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]


# The four metrics every run records, per epoch and at its selected epoch (SPEC §7).
METRIC_NAMES = tuple(metric_names())
MONITORS = METRIC_NAMES   # a run may select its epoch on any metric it records
MIN_DELTA = 1e-6   # the improvement an epoch needs to become the selected one (SPEC §6)
# SimpleX's parameters and their defaults (SPEC §3): mmlrepro.models.SimpleX takes them from here.
SIMPLEX_DEFAULTS: dict[str, Any] = {"aggregator": "mean", "gate": 0.5, "separate_history_table": False,
                                    "history_cap": None, "padding_softmax_bug": True}
# Fields that name a run or say where it executes, not what it computes: never in the key.
LABEL_FIELDS = ("dataset", "profile", "group", "device")
# Fields left out of the identity while they hold this value, so that adding them re-keyed
# nothing (none yet: every field of schema 3 is in the identity where it applies).
_DEFAULT_FREE: dict[str, Any] = {}


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings sorted tuples of pairs, so configs stay immutable."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value and all(
            isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(name: str, why: str) -> None:
    raise ValueError(f"RunConfig.{name}: {why}")


def _simplex_params(given: Mapping[str, Any]) -> dict[str, Any]:
    """SimpleX's parameters merged with its defaults, each checked and cast (SPEC §3)."""
    unknown = set(given) - set(SIMPLEX_DEFAULTS)
    if unknown:
        _bad("model_params", f"unknown parameters {sorted(unknown)}; known: {', '.join(SIMPLEX_DEFAULTS)}")
    hp = {**SIMPLEX_DEFAULTS, **given}
    if not _is_number(hp["gate"]) or not 0.0 <= hp["gate"] <= 1.0:
        _bad("model_params", f"gate must be a number in [0, 1], got {hp['gate']!r}")
    if hp["history_cap"] is not None and (not _is_int(hp["history_cap"]) or hp["history_cap"] < 1):
        _bad("model_params", f"history_cap must be None or an integer >= 1, got {hp['history_cap']!r}")
    for flag in ("separate_history_table", "padding_softmax_bug"):
        if not isinstance(hp[flag], bool):
            _bad("model_params", f"{flag} must be true or false, got {hp[flag]!r}")
    return {**hp, "gate": float(hp["gate"])}


def identity_key(identity: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``identity``'s canonical JSON (a run's key)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _effective_simplex_params(hp: Mapping[str, Any]) -> dict[str, Any]:
    """SimpleX's parameters minus those that change nothing the run computes (schema 3).

    With g = 1, p_u is never computed (:meth:`mmlrepro.models.SimpleX.raw_user_vectors`), so
    ``history_cap`` and ``padding_softmax_bug`` do not apply (the SimpleX Yelp2018 config);
    with the ``mean`` aggregator there is no softmax, so ``padding_softmax_bug`` does not apply.
    ``aggregator`` and ``separate_history_table`` stay at g = 1: W and the history table are
    still created from the seeded generator (which shifts every later random draw), and the
    table is regularised and counted in the clipped gradient norm.
    """
    out = dict(hp)
    if out["gate"] == 1.0:
        del out["history_cap"]
    if out["gate"] == 1.0 or out["aggregator"] == "mean":
        del out["padding_softmax_bug"]
    return out


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (SPEC §3, §6, §8).

    ``loss_params`` and ``model_params`` may be given as dicts (or left empty for the defaults);
    they are stored merged with the defaults, as sorted tuples, so the config is immutable and
    shows what the run computes. ``dataset`` is a name (``gowalla``, ``yelp2018``), a folder or
    ``synthetic[:USERS[:ITEMS]]``; which data a run used is its key's fingerprint, not this name.
    ``min_delta`` is the improvement an epoch needs to become the selected one (all selections,
    :func:`mmlrepro.selection.select_best`); ``patience`` applies to ``early_stop`` only and
    ``holdout_fraction`` to ``honest`` only. ``profile`` and ``group`` are labels.
    """

    dataset: str
    model: str = "mf"
    loss: str = "mml"
    loss_params: Any = field(default_factory=dict)
    model_params: Any = field(default_factory=dict)
    n_negatives: int = 100
    batch_size: int = 256
    lr: float = 1e-4
    epochs: int = 100
    dim: int = 64
    dropout: float = 0.1
    dropout_placement: str = "after_norm"
    reg_form: str = "full_table"
    reg_lambda: float = 1e-8
    grad_clip: float | None = 10.0
    seed: int = 2019
    selection: str = "paper"
    monitor: str = "recall@20"
    patience: int = 3
    min_delta: float = MIN_DELTA
    lr_reduce: bool = False
    holdout_fraction: float = 0.1
    exclude_positives: bool = False
    user_subsample: int | None = None
    profile: str = "custom"
    group: str = ""
    device: str = "auto"

    def __post_init__(self) -> None:
        self._validate()
        loss_hp = dict(_thaw(self.loss_params) or {})
        # the loss's checked hyperparameters: defaults merged, numbers as floats (SPEC §5)
        object.__setattr__(self, "loss_params", _freeze(check_loss_params(self.loss, loss_hp)))
        model_hp = dict(_thaw(self.model_params) or {})
        if self.model == "mf" and model_hp:
            _bad("model_params", "MF takes no model parameters")
        object.__setattr__(self, "model_params", _freeze(_simplex_params(model_hp) if self.model == "simplex" else {}))
        for name in ("lr", "dropout", "reg_lambda", "min_delta", "holdout_fraction"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.grad_clip is not None:
            object.__setattr__(self, "grad_clip", float(self.grad_clip))

    def _validate(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            _bad("dataset", f"must be a dataset name or folder, got {self.dataset!r}")
        if self.model not in MODELS:
            _bad("model", f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        if not isinstance(self.loss, str):
            _bad("loss", f"must be a loss name, got {self.loss!r}")
        for name in ("loss_params", "model_params"):
            value = getattr(self, name)
            if not isinstance(value, Mapping | tuple | list) and value is not None:
                _bad(name, f"must be a mapping of parameter names to values, got {value!r}")
        for name in ("n_negatives", "batch_size", "epochs", "dim", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _bad(name, f"must be an integer >= 1, got {value!r}")
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", f"must be a finite number > 0, got {self.lr!r}")
        if not (_is_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            _bad("dropout", f"must be a number in [0, 1), got {self.dropout!r}")
        if self.dropout_placement not in DROPOUT_PLACEMENTS:
            _bad("dropout_placement", f"must be one of {DROPOUT_PLACEMENTS}, got {self.dropout_placement!r}")
        if self.reg_form not in REG_FORMS:
            _bad("reg_form", f"must be one of {REG_FORMS}, got {self.reg_form!r}")
        if not (_is_number(self.reg_lambda) and math.isfinite(self.reg_lambda) and self.reg_lambda >= 0):
            _bad("reg_lambda", f"must be a finite number >= 0, got {self.reg_lambda!r}")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and math.isfinite(self.grad_clip)
                                               and self.grad_clip > 0):
            _bad("grad_clip", f"must be None or a number > 0, got {self.grad_clip!r}")
        if not _is_int(self.seed):
            _bad("seed", f"must be an integer, got {self.seed!r}")
        if self.selection not in SELECTIONS:
            _bad("selection", f"must be one of {SELECTIONS}, got {self.selection!r}")
        if self.monitor not in MONITORS:
            _bad("monitor", f"must be one of {MONITORS}, got {self.monitor!r}")
        if not (_is_number(self.min_delta) and math.isfinite(self.min_delta) and self.min_delta >= 0):
            _bad("min_delta", f"must be a finite number >= 0, got {self.min_delta!r}")
        if not (_is_number(self.holdout_fraction) and 0.0 < self.holdout_fraction < 1.0):
            _bad("holdout_fraction", f"must be a number in (0, 1), got {self.holdout_fraction!r}")
        for flag in ("lr_reduce", "exclude_positives"):
            if not isinstance(getattr(self, flag), bool):
                _bad(flag, f"must be True or False, got {getattr(self, flag)!r}")
        if self.user_subsample is not None and (not _is_int(self.user_subsample) or self.user_subsample < 1):
            _bad("user_subsample", f"must be None or an integer >= 1, got {self.user_subsample!r}")
        if self.profile not in (*PROFILES, "custom"):
            _bad("profile", f"must be one of {(*PROFILES, 'custom')}, got {self.profile!r}")
        if not isinstance(self.group, str):
            _bad("group", f"must be a string, got {self.group!r}")
        try:
            check_device_name(self.device)
        except ValueError as err:
            _bad("device", str(err))

    @property
    def loss_hp(self) -> dict[str, Any]:
        """The loss hyperparameters as a plain dict (lists for margins and weights)."""
        return {k: _thaw(v) for k, v in self.loss_params}

    @property
    def model_hp(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.model_params}

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["loss_params"] = self.loss_hp
        out["model_params"] = self.model_hp
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"RunConfig: unknown fields {sorted(unknown)}")
        return cls(**dict(data))

    def identity(self, data_fingerprint: str) -> dict[str, Any]:
        """What this run effectively computes, as plain JSON-able data (the key's payload).

        The normalised fields minus :data:`LABEL_FIELDS`, minus the fields that do not apply:
        ``patience`` outside ``early_stop``, ``holdout_fraction`` outside ``honest``,
        ``reg_form`` when ``reg_lambda`` is 0, ``dropout_placement`` when ``dropout`` is 0,
        ``model_params`` for MF and, of SimpleX's, those its forward pass never reads
        (:func:`_effective_simplex_params`); plus ``data`` (:meth:`data_fingerprint` of the
        source's fingerprint ``data_fingerprint``) and ``schema`` (:data:`KEY_SCHEMA`).
        """
        out = {k: v for k, v in self.to_dict().items() if k not in LABEL_FIELDS}
        dropped = {"patience": self.selection != "early_stop",
                   "holdout_fraction": self.selection != "honest",
                   "reg_form": self.reg_lambda == 0.0,
                   "dropout_placement": self.dropout == 0.0,
                   "model_params": self.model == "mf"}
        out = {k: v for k, v in out.items() if not dropped.get(k, False)
               and not (k in _DEFAULT_FREE and v == _DEFAULT_FREE[k])}
        if self.model == "simplex":
            out["model_params"] = _effective_simplex_params(self.model_hp)
        return {**out, "data": self.data_fingerprint(data_fingerprint), "schema": KEY_SCHEMA}

    def key(self, data_fingerprint: str) -> str:
        """16 hex digits of the SHA-256 of :meth:`identity`'s canonical JSON; ``data_fingerprint``
        is the source data's (:attr:`mmlrepro.data.Dataset.fingerprint`)."""
        return identity_key(self.identity(data_fingerprint))

    def derivation(self) -> dict[str, Any]:
        """How the run derives the data it sees from its source (SPEC §6, §8): ``user_subsample``
        ``{n, seed}`` (:meth:`mmlrepro.data.Dataset.subsample_users`, seed :data:`SUBSAMPLE_SEED`)
        and, for an honest run, ``holdout`` ``{fraction, seed}`` (:meth:`~mmlrepro.data.Dataset.holdout`
        of the subsample, the run's seed); empty for a run on its source data as it is."""
        out: dict[str, Any] = {}
        if self.user_subsample is not None:
            out["user_subsample"] = {"n": self.user_subsample, "seed": SUBSAMPLE_SEED}
        if self.selection == "honest":
            out["holdout"] = {"fraction": self.holdout_fraction, "seed": self.seed}
        return out

    def data_fingerprint(self, source_fingerprint: str) -> str:
        """The fingerprint of the data this run trains, selects and is tested on (schema 4).

        ``source_fingerprint`` itself for a run on its source data as it is (every paper-profile
        run: its key is that of schema 3); otherwise 16 hex digits of the SHA-256 of
        ``{"source": source_fingerprint, **derivation(), "draw": draw_id()}``: the source's content,
        what is drawn from it, and the identity of the draw
        (:func:`mmlrepro.data.draw_id`, so a numpy whose streams differ gives other keys).
        """
        if not isinstance(source_fingerprint, str) or not source_fingerprint:
            raise ValueError(f"a run's identity needs its data fingerprint, got {source_fingerprint!r}")
        derivation = self.derivation()
        if not derivation:
            return source_fingerprint
        return identity_key({"source": source_fingerprint, **derivation, "draw": draw_id()})

    def data_description(self, source_fingerprint: str) -> dict[str, Any]:
        """What a record says of the data its run saw: the ``source`` fingerprint, the
        :meth:`derivation` and its ``draw``, and the resulting ``fingerprint`` (in the key)."""
        derivation = self.derivation()
        return {"source": source_fingerprint, **derivation, **({"draw": draw_id()} if derivation else {}),
                "fingerprint": self.data_fingerprint(source_fingerprint)}

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """Short name, e.g. ``gowalla/mf/mml/N100/paper/seed2019 [quick]``."""
        return (f"{self.dataset}/{self.model}/{self.loss}/N{self.n_negatives}/{self.selection}"
                f"/seed{self.seed} [{self.profile}]")

    def settings(self) -> str:
        """The effective settings in one line, as ``train``/``reproduce`` print them before training."""
        loss = ", ".join(f"{k}={v}" for k, v in self.loss_hp.items()) or "no hyperparameters"
        model = "" if self.model == "mf" else " (" + ", ".join(f"{k}={v}" for k, v in self.model_hp.items()) + ")"
        extra = [f"patience {self.patience}"] if self.selection == "early_stop" else []
        extra += [f"holdout {self.holdout_fraction:g}"] if self.selection == "honest" else []
        extra += ["lr_reduce"] * self.lr_reduce + ["negatives exclude positives"] * self.exclude_positives
        extra += [f"{self.user_subsample} users"] if self.user_subsample else []
        return (f"{self.dataset} {self.model}{model} + {self.loss} ({loss}); N {self.n_negatives}, batch "
                f"{self.batch_size}, lr {self.lr:g}, {self.epochs} epochs, dim {self.dim}, dropout "
                f"{self.dropout:g} {self.dropout_placement}, reg {self.reg_form} λ {self.reg_lambda:g}, clip "
                f"{self.grad_clip}, seed {self.seed}, selection {self.selection} on {self.monitor}"
                + "".join(f", {e}" for e in extra))
