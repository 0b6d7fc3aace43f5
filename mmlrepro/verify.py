"""Check stored runs by training their first epochs again (``mmlrepro verify``; issue 36).

Training is seeded (SPEC §6): a run draws its initial weights, batch orders and negatives from
``torch.manual_seed(config.seed)``, and nothing of its first E epochs depends on
``config.epochs`` (the loop, the sampling, the selection rule and ``lr_reduce``'s cuts read only
the history so far; ``epochs`` only ends the loop). So the stored run's config with
``epochs = E`` trains exactly the first E epochs of its stored history. :func:`verify_run`
trains that (in memory: checkpoints go to a temporary folder and are never written, the store's
runs are never touched) and compares each epoch's training loss and Recall/NDCG@20 (test;
validation for an honest run) with the stored history: **identical** (every value equal to the
last bit), **within tolerance** (trained again on another CPU model than the run was made on:
every value within :data:`TOLERANCE`, relative; on the same model only identical agrees), or
**differs** (both values shown). The run trains again with the implementation of the
negatives' scores it was stored with (:func:`compiled_scores`: the compiled kernel, or the
PyTorch path of every run stored before issue 37), since the two agree to float rounding only.

Each verification is appended to ``<store>/verified.jsonl`` (:data:`LOG_NAME`: key, epochs,
outcome, largest relative difference, the device with its CPU model and thread count, date,
commit); :func:`last_verified` reads it back for the report. A run read off its ES = N twin
(``provenance.derived_from``) computes nothing of its own: verifying the twin covers it, and
the twin's log entry names it (``covers``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmlrepro.catalogue import catalogue_key, configs
from mmlrepro.config import RunConfig
from mmlrepro.data import Dataset
from mmlrepro.devices import cpu_model, device_name, resolve_device, stretches
from mmlrepro.files import check_writable
from mmlrepro.kernels import trained_with_compiled_scores
from mmlrepro.preflight import load_run_dataset
from mmlrepro.results import CODE_PATHS, ResultsStore, git_commit
from mmlrepro.train import train

# What counts as agreeing, by where the run is trained again. On the CPU model the run was made on
# (any thread count) its first epoch comes back bit-identical: measured on every such stored run
# (docs/cpu_profiles.md, "Verifying the store"), so there anything but "identical" differs. On
# another CPU model the float rounding differs (MKL takes other code paths on AMD and Intel), and
# Adam's first steps, about lr·sign(g), amplify it: the largest relative difference |here − stored|
# / |stored| of an epoch-1 loss or Recall/NDCG@20 measured across models (Intel Xeon -> AMD EPYC,
# 2026-12-06) was 5e-6 for the CCL, softmax CE and BPR-like losses and up to 1.15e-2 for MML
# (w_neg 400-700) and SimpleX. TOLERANCE admits that and nothing near the ±5 % of SPEC §10: across
# CPU models verify catches a wrong setting, not a changed rounding.
TOLERANCE = 2e-2
# Epochs that stay comparable when the run was trained on another CPU model or device.
CROSS_MODEL_EPOCHS = 1
COMPARED = ("loss", "recall@20", "ndcg@20")
LOG_NAME = "verified.jsonl"
# The paper's artefacts a plain `mmlrepro verify` picks one stored run of (the cheapest each).
ARTEFACTS = ("table3", "table2", "figure3")
OUTCOMES = ("identical", "within tolerance", "differs")


def _stdout(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class EpochValue:
    """One compared value: ``name`` at ``epoch``, stored and trained here."""

    epoch: int
    name: str
    stored: float
    here: float

    @property
    def rel_diff(self) -> float:
        """|here − stored| / |stored| (the absolute difference when ``stored`` is 0)."""
        gap = abs(self.here - self.stored)
        return gap / abs(self.stored) if self.stored else gap


def tolerance_for(device: str, stored_device: str) -> float:
    """0 (identical only) when a run made on ``stored_device`` (its stretches, "; "-separated)
    is trained again on the same CPU model, at any thread count; :data:`TOLERANCE` on another
    model or device."""
    same = {cpu_model(d) for d in stretches(stored_device)} == {cpu_model(device)}
    return 0.0 if same else TOLERANCE


def judged(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A log entry with its ``tolerance`` and ``outcome`` by today's rule, from what it measured
    (its largest relative difference and the two devices), so entries logged under an earlier
    tolerance read the same as new ones."""
    tolerance = tolerance_for(entry["device"], entry["stored_device"])
    gap = float(entry["max_rel_diff"])
    verdict = "identical" if gap == 0 else "within tolerance" if gap <= tolerance else "differs"
    return {**entry, "tolerance": tolerance, "outcome": verdict}


def outcome(values: Iterable[EpochValue], tolerance: float = TOLERANCE) -> str:
    """``identical`` when every value is bit-equal, ``within tolerance`` when every relative
    difference is at most ``tolerance``, else ``differs`` (a NaN differs)."""
    values = list(values)
    if all(v.here == v.stored for v in values):
        return "identical"
    if all(v.rel_diff <= tolerance for v in values):
        return "within tolerance"
    return "differs"


@dataclass
class Verification:
    """What :func:`verify_run` found for one stored run."""

    key: str
    label: str
    epochs: int
    values: list[EpochValue]
    device: str
    stored_device: str
    seconds: float
    covers: list[str] = field(default_factory=list)

    @property
    def tolerance(self) -> float:
        return tolerance_for(self.device, self.stored_device)

    @property
    def outcome(self) -> str:
        return outcome(self.values, self.tolerance)

    @property
    def max_rel_diff(self) -> float:
        return max(v.rel_diff for v in self.values)

    def lines(self) -> list[str]:
        """The run's result: one headline, and every value that is not identical."""
        head = (f"{self.label} #{self.key} (stored on {self.stored_device}): {self.epochs} epoch"
                f"{'s' if self.epochs > 1 else ''} on {self.device} in {self.seconds:.0f} s: {self.outcome}")
        if self.outcome != "identical":
            head += (f" (largest relative difference {self.max_rel_diff:.2e}, tolerance {self.tolerance:g}"
                     f"{' on the CPU model it was made on' if not self.tolerance else ' on another CPU model'})")
        return [head] + [f"  epoch {v.epoch} {v.name}: stored {v.stored!r}, here {v.here!r} "
                         f"(relative difference {v.rel_diff:.2e})" for v in self.values if v.here != v.stored]

    def log_entry(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "epochs": self.epochs, "outcome": self.outcome,
                "max_rel_diff": self.max_rel_diff, "tolerance": self.tolerance, "device": self.device,
                "stored_device": self.stored_device, "seconds": round(self.seconds, 1),
                "torch": torch.__version__, "covers": self.covers,
                "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "git_commit": git_commit(paths=CODE_PATHS)}


# --------------------------------------------------------------------------------------------
# which runs


def _s_per_epoch(record: Mapping[str, Any]) -> float:
    """The stored run's mean seconds per epoch (training + evaluation), from its history."""
    history = record["history"]
    return sum(r.get("train_s", 0.0) + r.get("eval_s", 0.0) for r in history) / len(history)


def _derived(record: Mapping[str, Any]) -> bool:
    return bool(record.get("provenance", {}).get("derived_from"))


def artefact_runs(records: Iterable[Mapping[str, Any]], groups: Iterable[str] = ARTEFACTS) -> dict[str, list[str]]:
    """The keys of the stored paper-profile runs of each catalogue group (any seed), trained
    ones only (a run read off its twin is covered by the twin), cheapest per epoch first."""
    trained = {r["key"]: r for r in records if not _derived(r)}
    out = {}
    for group in groups:
        keys = {catalogue_key(c) for c in configs(group, "paper", 10)}
        out[group] = sorted((k for k in keys if k in trained), key=lambda k: _s_per_epoch(trained[k]))
    return out


def choose(records: list[dict[str, Any]], keys: Iterable[str] = (), all_runs: bool = False,
           groups: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The records to verify: the given ``keys`` (full or a unique prefix); else with
    ``all_runs`` every trained paper-profile run of ``groups`` (default: every trained
    paper-profile run); else the cheapest trained paper-profile run of each group (default
    :data:`ARTEFACTS`), by the stored seconds per epoch. ValueError naming what is wrong."""
    keys, groups = list(keys), list(groups)
    by_key = {r["key"]: r for r in records}
    if keys and (all_runs or groups):
        raise ValueError("give run keys, or --all / --group, not both")
    if keys:
        chosen = []
        for k in keys:
            hits = [key for key in by_key if key.startswith(k)]
            if len(hits) != 1:
                raise ValueError(f"run key {k!r} {'matches no' if not hits else f'matches {len(hits)}'} "
                                 "stored run" + ("s" if hits else "") + " (see results/runs/)")
            chosen.append(by_key[hits[0]])
        return list({r["key"]: r for r in chosen}.values())
    if all_runs and not groups:
        return [r for r in records if r["config"]["profile"] == "paper" and not _derived(r)]
    per_group = artefact_runs(records, groups or ARTEFACTS)
    if empty := [g for g, ks in per_group.items() if not ks]:
        raise ValueError(f"the store holds no trained paper-profile run of {', '.join(empty)}")
    picked = [k for ks in per_group.values() for k in (ks if all_runs else ks[:1])]
    return [by_key[k] for k in dict.fromkeys(picked)]


def check_request(records: list[dict[str, Any]], epochs: int) -> None:
    """ValueError unless every record has at least ``epochs`` (≥ 1) stored epochs."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"--epochs must be an integer >= 1, got {epochs!r}")
    if not records:
        raise ValueError("no run to verify")
    short = [r for r in records if len(r["history"]) < epochs]
    if short:
        r = short[0]
        raise ValueError(f"run {r['key']} stores {len(r['history'])} epochs, fewer than the {epochs} "
                         f"to verify{f' ({len(short)} such runs)' if len(short) > 1 else ''}")


# --------------------------------------------------------------------------------------------
# verifying


def verify_run(record: Mapping[str, Any], epochs: int, source: Dataset, device: str | None = None,
               covers: Iterable[str] = ()) -> Verification:
    """Train the first ``epochs`` epochs of the stored run ``record`` on ``source`` (its data,
    whose fingerprint must be the record's) and compare them with its history."""
    config = RunConfig.from_dict(record["config"])
    if source.fingerprint != record["data_fingerprint"]:
        raise ValueError(f"run {record['key']}: the data loaded (fingerprint {source.fingerprint}) is not the "
                         f"data it was trained on ({record['data_fingerprint']})")
    short = config.replace(epochs=epochs, **({"device": device} if device else {}))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmlrepro-verify-") as scratch:
        result = train(short, dataset=source, checkpoint_dir=scratch, resume=False,
                       checkpoint_every_s=math.inf, log=None,
                       compiled_scores=compiled_scores(record))
    seconds = time.perf_counter() - start
    values = [EpochValue(here["epoch"], name, float(stored[name]), float(here[name]))
              for stored, here in zip(record["history"][:epochs], result.history, strict=True)
              for name in COMPARED]
    return Verification(record["key"], config.label(), epochs, values, result.device,
                        _stored_device(record, epochs), seconds, list(covers))


def compiled_scores(record: Mapping[str, Any]) -> bool:
    """Whether the stored run scored its negatives with the compiled kernel (issue 37): its
    provenance says so. Runs stored before the kernel (no such entry) trained with the PyTorch
    path and are verified with it: the two agree to float rounding only, and on Gowalla
    MF + MSE N = 100 that rounding grew to 8.5e-3 in Recall@20 in one epoch (docs/cpu_profiles.md)."""
    return trained_with_compiled_scores(record.get("provenance", {}))


def _stored_device(record: Mapping[str, Any], epochs: int) -> str:
    """The device the stored run's first ``epochs`` epochs ran on."""
    names = dict.fromkeys(r.get("device", record["device"]) for r in record["history"][:epochs])
    return "; ".join(names)


def append_log(root: Path, verification: Verification) -> None:
    """Append ``verification`` to ``<root>/verified.jsonl`` (one JSON object a line)."""
    with open(root / LOG_NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps(verification.log_entry(), sort_keys=True) + "\n")


def last_verified(results_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The latest verification of each run key in the store's ``verified.jsonl``: its log entry
    (``key``, ``epochs``, ``outcome``, ``max_rel_diff``, ``device``, ``time_utc``,
    ``git_commit``, ...). A run read off a verified twin gets the twin's entry with ``via`` set
    to the twin's key; ``outcome`` and ``tolerance`` by today's rule (:func:`judged`). {} without
    a log."""
    store = ResultsStore(results_dir, log=None)
    path = store.root / LOG_NAME
    if not path.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = judged(json.loads(line))
        out[entry["key"]] = entry
        for key in entry.get("covers", []):
            out[key] = {**entry, "key": key, "via": entry["key"]}
    return out


def verify(keys: Iterable[str] = (), *, all_runs: bool = False, groups: Iterable[str] = (), epochs: int = 1,
           results_dir: str | Path | None = None, data_dir: str | None = None, device: str | None = None,
           log: Callable[[str], None] | None = _stdout) -> list[Verification]:
    """Verify the chosen stored runs (:func:`choose`) for their first ``epochs`` epochs, logging
    each result as it is found and appending it to the verification log; returns them.

    Everything is checked before the first step: the runs, ``epochs`` against their histories,
    the device, that the log can be written, and the data (loaded, fingerprints compared).
    """
    log = log or (lambda line: None)
    store = ResultsStore(results_dir, log=None)
    store.require_current_schema()
    records = store.records()
    chosen = choose(records, keys, all_runs, groups)
    check_request(chosen, epochs)
    if device is not None:
        resolve_device(device)
    check_writable(store.root, "results store")
    sources: dict[str, Dataset] = {}
    for record in chosen:
        name = record["config"]["dataset"]
        if name not in sources:
            sources[name] = load_run_dataset(RunConfig.from_dict(record["config"]), data_dir)
        if sources[name].fingerprint != record["data_fingerprint"]:
            raise ValueError(f"run {record['key']}: {name} as loaded (fingerprint {sources[name].fingerprint}) "
                             f"is not the data it was trained on ({record['data_fingerprint']})")
    derived = {}
    for r in records:
        if twin := r.get("provenance", {}).get("derived_from"):
            derived.setdefault(twin, []).append(r["key"])
    eta = sum(_s_per_epoch(r) for r in chosen) * epochs / 60
    here = device_name(resolve_device(device or "auto"))
    log(f"verifying {len(chosen)} stored run{'s' if len(chosen) > 1 else ''} for {epochs} epoch"
        f"{'s' if epochs > 1 else ''} each (about {eta:.0f} min by their stored timings) on {here}")
    elsewhere = [r["key"] for r in chosen if {cpu_model(d) for d in stretches(_stored_device(r, epochs))}
                 != {cpu_model(here)}]
    if epochs > CROSS_MODEL_EPOCHS and elsewhere:
        log(f"note: {len(elsewhere)} of these runs (e.g. {elsewhere[0]}) were trained on another device; "
            f"rounding differences there grow with every epoch trained, so only the first "
            f"{CROSS_MODEL_EPOCHS} epoch is comparable within the tolerance (docs/cpu_profiles.md)")
    done = []
    for i, record in enumerate(chosen, 1):
        result = verify_run(record, epochs, sources[record["config"]["dataset"]], device,
                            covers=derived.get(record["key"], []))
        append_log(store.root, result)
        done.append(result)
        lines = result.lines()
        log(f"[{i}/{len(chosen)}] {lines[0]}")
        for line in lines[1:]:
            log(line)
    return done


def summary(results: list[Verification]) -> str:
    """The last line: how many runs were checked and how many agree."""
    counts = {name: sum(r.outcome == name for r in results) for name in OUTCOMES}
    agree = counts["identical"] + counts["within tolerance"]
    return (f"{len(results)} stored run{'s' if len(results) != 1 else ''} checked, {agree} agree "
            f"({counts['identical']} identical, {counts['within tolerance']} within tolerance "
            f"{TOLERANCE:g} on another CPU model), {counts['differs']} differ")
