"""Every committed record keeps its key (issue 38): the repository's ``results/runs/`` and
``results/linear/`` records, read only, rebuilt into their configs and keyed again.

A run record's key is ``RunConfig.key`` of its config and its source's fingerprint (schema 4:
the identity holds the fingerprint of the data the run saw, :meth:`RunConfig.data_fingerprint`;
for a paper-profile run the source's own, for a quick-profile run a hash of the source, its user
subsample and the draw); the key names the file. The datasets are not needed: every committed run
trains on the LightGCN files, whose fingerprints are ``data.KNOWN_FINGERPRINTS``, and the draw is
named by a probe of numpy's streams (``data.draw_id``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlrepro.config import SCHEMA_VERSION, RunConfig
from mmlrepro.data import KNOWN_FINGERPRINTS
from mmlrepro.linear import LinearConfig

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "results" / "runs").glob("*.json"))
LINEAR = sorted((ROOT / "results" / "linear").glob("*.json"))


def test_the_repository_holds_committed_records():
    assert len(RUNS) > 200 and LINEAR, "the committed results/ store is missing"


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_a_committed_run_keeps_its_key(path):
    record = json.loads(path.read_text())
    assert record["schema"] == SCHEMA_VERSION
    config = RunConfig.from_dict(record["config"])
    source = record["data_fingerprint"]
    assert source == KNOWN_FINGERPRINTS[config.dataset]          # the LightGCN files as they are
    assert record["data"] == config.data_description(source)     # source, derivation, draw, fingerprint
    if config.profile == "paper":
        assert config.data_fingerprint(source) == source         # a paper run sees its source as it is
    assert config.key(source) == record["key"] == path.stem


@pytest.mark.parametrize("path", LINEAR, ids=lambda p: p.stem)
def test_a_committed_linear_run_keeps_its_key(path):
    record = json.loads(path.read_text())
    assert LinearConfig.from_dict(record["config"]).key() == record["key"] == path.stem
