"""Shared fixtures: a small synthetic dataset and the real-data folder (SPEC §2)."""

import os
from pathlib import Path

import pytest

from mmlrepro.data import Dataset, synthetic

REAL_FILES = [f"{name}/{split}.txt" for name in ("gowalla", "yelp2018") for split in ("train", "test")]


@pytest.fixture(scope="session")
def synthetic_dataset() -> Dataset:
    """``synthetic(seed=0)``: 500 users, 800 items, every user with >= 2 train and >= 1 test items."""
    return synthetic(seed=0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$MMLREPRO_DATA_DIR`` holding ``{gowalla,yelp2018}/{train,test}.txt``; skips otherwise."""
    root = os.environ.get("MMLREPRO_DATA_DIR")
    if not root:
        pytest.skip("MMLREPRO_DATA_DIR is not set")
    missing = [f for f in REAL_FILES if not (Path(root) / f).is_file()]
    if missing:
        pytest.skip(f"MMLREPRO_DATA_DIR={root} lacks {', '.join(missing)}")
    return Path(root)
