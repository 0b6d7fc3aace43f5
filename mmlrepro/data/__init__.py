"""Datasets (SPEC §2): the :class:`Dataset` type, the LightGCN files, where they come from, synthetic data.

- :mod:`~mmlrepro.data.dataset`: the frozen :class:`Dataset` (CSR train/test), its fingerprint,
  user subsample and honest-mode holdout, and :func:`draw_id`;
- :mod:`~mmlrepro.data.lightgcn`: parsing ``train.txt`` / ``test.txt`` and their id rules;
- :mod:`~mmlrepro.data.sources`: :func:`load_dataset`: local copies, the cache, the download and
  its SHA-256 checksums, :data:`KNOWN_FINGERPRINTS`;
- :mod:`~mmlrepro.data.synthetic_data`: the synthetic generator and ``synthetic:U:I`` specs;
- :mod:`~mmlrepro.data.errors`: :class:`DataError` and :class:`DataFileNotFoundError`.

Every public name is re-exported here (``from mmlrepro.data import load_dataset, synthetic``).
"""

from mmlrepro.data.dataset import SPLITS, Dataset, draw_id
from mmlrepro.data.errors import DataError, DataFileNotFoundError
from mmlrepro.data.lightgcn import MAX_ID, parse_lightgcn, read_split_files
from mmlrepro.data.sources import (
    BASE_URL,
    KNOWN_FINGERPRINTS,
    NAMES,
    SHA256,
    dataset_fingerprint,
    default_cache_dir,
    download_file,
    load_dataset,
    load_named_or_synthetic,
    sha256_file,
)
from mmlrepro.data.synthetic_data import SYNTHETIC_MAX_CELLS, parse_synthetic, synthetic

__all__ = [
    "BASE_URL", "KNOWN_FINGERPRINTS", "MAX_ID", "NAMES", "SHA256", "SPLITS", "SYNTHETIC_MAX_CELLS",
    "DataError", "DataFileNotFoundError", "Dataset", "dataset_fingerprint", "default_cache_dir",
    "download_file", "draw_id", "load_dataset", "load_named_or_synthetic", "parse_lightgcn",
    "parse_synthetic", "read_split_files", "sha256_file", "synthetic",
]
