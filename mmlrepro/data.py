"""Datasets: LightGCN-format loading, download with a checksummed cache, synthetic data (SPEC §2).

File format (SPEC §2): one line per user, ``user_id item_id item_id ...``, ids from 0, separated
by spaces. ``load_dataset`` reads it into a :class:`Dataset` whose interactions are CSR numpy int64
arrays. Id ranges, the rule this module enforces [assumed, checked on the real files]:

- ``n_users = max(user id in train, user id in test) + 1`` (users with no line get empty rows; a
  user with a test line and no train line is accepted, with an empty train row);
- ``n_items = max(item id in train) + 1``; a test item ``>= n_items`` was never seen in training
  and is an error naming the test file and line (it holds for Gowalla and Yelp2018, whose test
  items all occur in train, which is why MML Table 1's item counts come out exactly);
- every id is ``< 2^31`` (``MAX_ID``: int32, what index tensors and embedding tables take), and
  an id range over ``2^20`` may be at most 16 times the number of distinct ids used (the arrays
  are sized by the largest id, so one stray ``10^9`` would otherwise allocate gigabytes).

Tolerated: CRLF line endings, tabs and trailing spaces, blank lines, a user line with no items.
Errors (:class:`DataError`, a ``ValueError``, one line always naming the file and, where there is
one, the line): a non-integer token, a non-ASCII byte, a negative id, an id out of range, ids with
a huge gap, a user with two lines, a test item never seen in train, a file with no interactions,
a file that cannot be read (permission, a folder in its place), a missing file or folder
(:class:`DataFileNotFoundError`, also a ``FileNotFoundError``, saying where it looked), a
``data_dir`` or ``$MMLREPRO_DATA_DIR`` that is not a folder, a cache folder that is a file, a
download that fails or whose SHA-256 differs from the table below (nothing is left in the cache).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import re
import tempfile
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

NAMES = ("yelp2018", "gowalla")  # the order of the paper's tables
SPLITS = ("train", "test")
BASE_URL = "https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data"

# SHA-256 of the public LightGCN files (SPEC §2; byte-identical to shared/data, see SHA256SUMS).
SHA256 = MappingProxyType({
    "gowalla/train.txt": "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
    "gowalla/test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
    "yelp2018/train.txt": "1e9568725a9e833d0ac3bae01c94cd95367f73b3bb6104fd26b5f65ea5054093",
    "yelp2018/test.txt": "9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe",
})


# Fingerprints (:attr:`Dataset.fingerprint`) of the canonical LightGCN files of SHA256 above.
KNOWN_FINGERPRINTS = MappingProxyType({
    "gowalla": "399e30b576ba6b59",
    "yelp2018": "0175267903f28303",
})

MAX_ID = 2**31  # every user and item id must be < MAX_ID (int32 range) [assumed]
_DENSE_IDS = 2**20  # an id range up to this size is always accepted ...
_GAP_FACTOR = 16  # ... above it, it may be at most this many times the distinct ids used
SYNTHETIC_MAX_CELLS = 10**7  # users x items of a "synthetic:U:I" spec (dense U x I work arrays)


class DataError(ValueError):
    """A data file is missing, malformed, inconsistent, or failed to download."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file could not be found; the message lists every place that was searched."""


# ---------------------------------------------------------------------------------------------
# The dataset object


@dataclass(frozen=True, eq=False)
class Dataset:
    """User-item interactions split into train and test, as CSR int64 arrays (SPEC §2).

    Row ``u`` of a split holds ``indices[indptr[u]:indptr[u + 1]]``: user ``u``'s item ids in file
    order. ``train_indptr`` and ``test_indptr`` have ``n_users + 1`` entries.
    """

    name: str
    n_users: int
    n_items: int
    train_indptr: np.ndarray
    train_indices: np.ndarray
    test_indptr: np.ndarray
    test_indices: np.ndarray

    def __post_init__(self) -> None:
        for field in ("train_indptr", "train_indices", "test_indptr", "test_indices"):
            object.__setattr__(self, field, np.asarray(getattr(self, field), dtype=np.int64))
        for split in SPLITS:
            indptr, indices = self.csr(split)
            if indptr.shape != (self.n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices):
                raise ValueError(f"{self.name}: {split}_indptr is not a CSR index of "
                                 f"{self.n_users} users over {len(indices)} entries")
            if len(indices) and (indices.min() < 0 or indices.max() >= self.n_items):
                raise ValueError(f"{self.name}: {split} item ids outside [0, {self.n_items})")

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, users={self.n_users:,}, items={self.n_items:,}, "
                f"train={len(self.train_indices):,}, test={len(self.test_indices):,})")

    @functools.cached_property
    def fingerprint(self) -> str:
        """Content hash: the first 16 hex digits of the SHA-256 of ``n_users``, ``n_items`` and the
        four CSR arrays (little-endian int64 bytes, after a version tag). It ignores ``name`` and
        where the data came from, and changes with any interaction (or its order within a user).
        Computed once per object: the arrays are treated as immutable."""
        digest = hashlib.sha256(b"mmlrepro.Dataset/v1")
        digest.update(np.array([self.n_users, self.n_items], "<i8").tobytes())
        for field in ("train_indptr", "train_indices", "test_indptr", "test_indices"):
            digest.update(np.ascontiguousarray(getattr(self, field), "<i8").tobytes())
        return digest.hexdigest()[:16]

    def check_for_ranking(self, ks: Iterable[int] = (20, 50)) -> None:
        """Raise :class:`DataError` unless every cutoff ``K`` of ``ks`` is ``< n_items``.

        The evaluation ranks all items (SPEC §7), so with ``K >= n_items`` every item is in the
        top K and Recall@K / NDCG@K say nothing: such a dataset is rejected before any training
        [assumed]. A ``K`` that is not a positive integer is a ``ValueError``.
        """
        ks = list(ks)
        bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1]
        if bad:
            raise ValueError(f"K must be a positive integer, got {bad[0]!r}")
        if ks and max(ks) >= self.n_items:
            k = max(ks)
            raise DataError(f"dataset {self.name!r} has {self.n_items:,} items, too few for "
                            f"K = {k}: the evaluation ranks all items, so Recall@{k} and "
                            f"NDCG@{k} need more than K items")

    def csr(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of ``split`` ("train" or "test")."""
        if split == "train":
            return self.train_indptr, self.train_indices
        if split == "test":
            return self.test_indptr, self.test_indices
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def train_users(self) -> np.ndarray:
        """User id of every train row, in row order (pairs with :meth:`train_items`)."""
        return _row_ids(self.train_indptr)

    def train_items(self) -> np.ndarray:
        """Item id of every train row (``== train_indices``)."""
        return self.train_indices

    def history_lengths(self) -> np.ndarray:
        """Number of train items of every user, ``[n_users]``."""
        return np.diff(self.train_indptr)

    def item_popularity(self) -> np.ndarray:
        """Number of train interactions of every item, ``[n_items]``."""
        return np.bincount(self.train_indices, minlength=self.n_items)

    def stats(self) -> dict[str, int | float]:
        """MML Table 1: users, items, interactions = train + test, and
        density = interactions / (users · items) (a float; the paper prints 5 decimals)."""
        train, test = len(self.train_indices), len(self.test_indices)
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": train + test,
            "train": train,
            "test": test,
            "density": (train + test) / (self.n_users * self.n_items),
        }

    def subsample_users(self, n: int, seed: int) -> Dataset:
        """Keep ``n`` users drawn uniformly (without replacement, ``np.random.default_rng(seed)``)
        among those with >= 1 test item, renumbered ``0..n-1`` in their original order. All items
        and ``n_items`` are kept (the quick profile)."""
        eligible = np.flatnonzero(np.diff(self.test_indptr) > 0)
        if not 1 <= n <= len(eligible):
            raise ValueError(f"n must be in [1, {len(eligible)}] (users with a test item), got {n}")
        users = np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))
        train = _take_rows(self.train_indptr, self.train_indices, users)
        test = _take_rows(self.test_indptr, self.test_indices, users)
        return Dataset(f"{self.name}-sub{n}", n, self.n_items, *train, *test)

    def holdout(self, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Honest-mode split (SPEC §6): carve a validation set out of train.

        Every user with ``L >= 2`` train items gives up ``k = clip(floor(fraction·L + 0.5), 1, L-1)``
        of them (round half up, at least one, at least one left), chosen uniformly at random with
        ``np.random.default_rng(seed)``; users with fewer than 2 train items keep them all.

        Returns ``(fit, validation)``. Both have the reduced train split (file order kept);
        ``fit.test`` is the original test split (touched once, at the end) and ``validation.test``
        holds the held-out items (used for model selection).
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        lengths = self.history_lengths()
        k = np.clip(np.floor(fraction * lengths + 0.5).astype(np.int64), 1, None)
        k = np.where(lengths >= 2, np.minimum(k, lengths - 1), 0)
        users = self.train_users()
        keys = np.random.default_rng(seed).random(len(users))
        order = np.lexsort((keys, users))  # rows grouped by user, random order inside each user
        rank = np.empty(len(users), np.int64)
        rank[order] = np.arange(len(users)) - self.train_indptr[users[order]]
        held = rank < k[users]
        fit_train = _csr_from_rows(users[~held], self.train_indices[~held], self.n_users)
        val_test = _csr_from_rows(users[held], self.train_indices[held], self.n_users)
        fit = Dataset(f"{self.name}-fit", self.n_users, self.n_items, *fit_train,
                      self.test_indptr, self.test_indices)
        validation = Dataset(f"{self.name}-validation", self.n_users, self.n_items, *fit_train,
                             *val_test)
        return fit, validation


@functools.cache
def draw_id() -> str:
    """The identity of the random draws of :meth:`Dataset.subsample_users` and
    :meth:`Dataset.holdout`: ``"pcg64:"`` + 8 hex digits of the SHA-256 of what numpy's
    ``default_rng`` gives on a probe that takes every path those draws take (``choice`` without
    replacement by tail shuffle, over 10,000 users, and by Floyd's algorithm; ``random``).

    numpy does not promise these streams across versions (NEP 19), and the quick profile's runs
    and every honest run see data drawn by them, so a run's key names the draw
    (:meth:`mmlrepro.config.RunConfig.data_fingerprint`): a numpy that draws otherwise gives
    other keys, so a stored run is never served for data it did not see. The draws are kept
    (not replaced by a numpy-free one) because 221 stored quick runs saw them [assumed].
    On numpy 1.26 to 2.4 it is ``pcg64:`` + :data:`PCG64_PROBE` (tests/test_store.py).
    """
    rng = np.random.default_rng(0)
    probe = [rng.choice(np.arange(20_000), size=1_000, replace=False),
             rng.choice(np.arange(1_000), size=10, replace=False), rng.random(16)]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
                                     for a in probe))
    return "pcg64:" + digest.hexdigest()[:8]


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


def _csr_from_rows(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, ...]:
    """CSR of (user, item) rows; a stable sort keeps each user's items in their given order."""
    order = np.argsort(users, kind="stable")
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr, np.ascontiguousarray(items[order], dtype=np.int64)


def _take_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """CSR made of the given rows of ``(indptr, indices)``, in the order given."""
    lengths = indptr[rows + 1] - indptr[rows]
    new_indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    offsets = np.arange(new_indptr[-1]) - np.repeat(new_indptr[:-1], lengths)
    return new_indptr, indices[np.repeat(indptr[rows], lengths) + offsets]


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class _Parsed:
    path: Path
    users: np.ndarray  # user id of every non-blank line
    lines: np.ndarray  # its 1-based line number
    counts: np.ndarray  # its number of items
    items: np.ndarray  # all item ids, file order


_DIGIT_LIMIT = 18  # 10**18 < 2**63: longer tokens would overflow int64


def _line_of(buf: np.ndarray, pos: int) -> int:
    return int(np.count_nonzero(buf[:pos] == 10)) + 1


def _token_span(buf: np.ndarray, pos: int) -> bytes:
    """The bytes of the whitespace-delimited token around byte ``pos``."""
    space = np.flatnonzero(np.isin(buf, (9, 10, 13, 32)))
    start = space[space < pos][-1] + 1 if np.any(space < pos) else 0
    end = space[space > pos][0] if np.any(space > pos) else len(buf)
    return bytes(buf[start:end])


def _token_at(buf: np.ndarray, pos: int, limit: int = 40) -> str:
    """The token around byte ``pos`` as text, cut to ``limit`` characters."""
    token = _token_span(buf, pos).decode("utf-8", "replace")
    return token if len(token) <= limit else token[: limit - 3] + "..."


def _read_error(path: Path, error: OSError) -> DataError:
    """The one-line :class:`DataError` for a file that could not be opened or read."""
    if isinstance(error, FileNotFoundError):
        return DataFileNotFoundError(f"{path}: no such file")
    if isinstance(error, IsADirectoryError) or path.is_dir():
        return DataError(f"{path}: is a folder, not a data file")
    return DataError(f"{path}: cannot be read ({error.strerror or type(error).__name__})")


def _bad_byte(path: Path, buf: np.ndarray, pos: int) -> DataError:
    """The error for the first byte that is neither an ASCII digit nor whitespace."""
    token, where = _token_at(buf, pos), f"{path}, line {_line_of(buf, pos)}"
    span = _token_span(buf, pos)
    high = [b for b in span if b >= 128]
    if high:
        shown = repr(span[:24]) + ("..." if len(span) > 24 else "")
        return DataError(f"{where}: non-ASCII byte 0x{high[0]:02x} in token {shown} (the "
                         f"format is ASCII digits and whitespace)")
    if token.startswith("-") and token[1:].isdigit():
        return DataError(f"{where}: negative id {token!r}")
    return DataError(f"{where}: non-integer token {token!r}")


def parse_lightgcn(path: str | os.PathLike) -> _Parsed:
    """Parse one LightGCN-format file, vectorised over the bytes (no Python loop over lines).

    Every token must be a run of ASCII digits, its value ``< MAX_ID``; whitespace is space, tab,
    CR or LF, so CRLF, trailing spaces and blank lines are accepted. The first token of a line is
    the user id, the rest its items. Raises :class:`DataError` with file and line on anything
    else, and with the file on a file that cannot be read.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _read_error(path, error) from None
    buf = np.frombuffer(raw, np.uint8)
    digit = (buf >= 48) & (buf <= 57)
    space = (buf == 32) | (buf == 10) | (buf == 13) | (buf == 9)
    bad = ~(digit | space)
    if bad.any():
        raise _bad_byte(path, buf, int(np.argmax(bad)))

    starts = np.flatnonzero(digit & ~np.concatenate(([False], digit[:-1])))
    ends = np.flatnonzero(digit & ~np.concatenate((digit[1:], [False])))
    long = ends - starts >= _DIGIT_LIMIT
    if long.any():
        pos = int(starts[np.argmax(long)])
        raise DataError(f"{path}, line {_line_of(buf, pos)}: id {_token_at(buf, pos)} has "
                        f"more than {_DIGIT_LIMIT} digits (ids must be < 2^31 = {MAX_ID})")
    # Every byte is now a digit or whitespace, and numpy's C reader agrees with bytes.split()
    # there as long as there is at least one token (checked just below).
    values = np.fromstring(raw, dtype=np.int64, sep=" ") if len(starts) else starts
    if len(values) != len(starts):  # never expected; the slow exact path
        values = np.array([int(t) for t in raw.split()], dtype=np.int64)
    big = values >= MAX_ID
    if big.any():
        i = int(np.argmax(big))
        raise DataError(f"{path}, line {_line_of(buf, int(starts[i]))}: id {values[i]} is out "
                        f"of range (ids must be < 2^31 = {MAX_ID})")
    # line i (1-based i + 1) holds tokens first[i]:first[i + 1]; its first token is the user
    first = np.concatenate(([0], np.searchsorted(starts, np.flatnonzero(buf == 10))))
    n_tokens = np.diff(np.append(first, len(starts)))
    filled = np.flatnonzero(n_tokens > 0)
    head = first[filled]
    is_item = np.ones(len(values), bool)
    is_item[head] = False
    return _Parsed(path, values[head], filled + 1, n_tokens[filled] - 1, values[is_item])


def _check_duplicates(parsed: _Parsed) -> None:
    users, first_pos = np.unique(parsed.users, return_index=True)
    if len(users) < len(parsed.users):
        dup = np.ones(len(parsed.users), bool)
        dup[first_pos] = False
        i = int(np.argmax(dup))
        earlier = parsed.lines[first_pos[np.searchsorted(users, parsed.users[i])]]
        raise DataError(f"{parsed.path}, line {parsed.lines[i]}: user {parsed.users[i]} already "
                        f"has a line (line {earlier})")


def _check_gaps(kind: str, ids: np.ndarray, n: int, where: str) -> None:
    """DataError if an id range ``n`` over ``_DENSE_IDS`` is over ``_GAP_FACTOR`` x the ids used
    (the CSR arrays and every embedding table are sized by ``n``)."""
    if n <= _DENSE_IDS:
        return
    used = len(np.unique(ids))
    if n > _GAP_FACTOR * used:
        raise DataError(f"{where}: {kind} id {n - 1:,} makes {n:,} {kind}s for {used:,} distinct "
                        f"{kind} ids; ids must count from 0 (an id range over 2^20 may be at "
                        f"most {_GAP_FACTOR}x the ids used)")


def _line_of_item(parsed: _Parsed, i: int) -> int:
    """Line number of the ``i``-th item of a parsed file."""
    return int(parsed.lines[np.searchsorted(np.cumsum(parsed.counts), i, side="right")])


def read_split_files(train_path: str | os.PathLike, test_path: str | os.PathLike,
                     name: str) -> Dataset:
    """Build a :class:`Dataset` from a train and a test file, with the id rules of this module."""
    train, test = parse_lightgcn(train_path), parse_lightgcn(test_path)
    for parsed in (train, test):
        _check_duplicates(parsed)
        if len(parsed.items) == 0:
            raise DataError(f"{parsed.path}: no interactions (empty dataset)")
    top = train if train.users.max() >= test.users.max() else test
    n_users = int(top.users.max()) + 1
    n_items = int(train.items.max()) + 1
    _check_gaps("user", np.concatenate((train.users, test.users)), n_users,
                f"{top.path}, line {top.lines[np.argmax(top.users)]}")
    _check_gaps("item", train.items, n_items,
                f"{train.path}, line {_line_of_item(train, int(np.argmax(train.items)))}")
    unseen = test.items >= n_items
    if unseen.any():
        i = int(np.argmax(unseen))
        line = _line_of_item(test, i)
        raise DataError(f"{test.path}, line {line}: test item {test.items[i]} is outside the "
                        f"item range [0, {n_items}) of the train file {train.path} "
                        f"(an item never seen in training)")
    csr = [_csr_from_rows(np.repeat(p.users, p.counts), p.items, n_users) for p in (train, test)]
    return Dataset(name, n_users, n_items, *csr[0], *csr[1])


# ---------------------------------------------------------------------------------------------
# Finding and downloading the files


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (:class:`DataError` naming it if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise _read_error(Path(path), error) from None
    return digest.hexdigest()


def download_file(url: str, dest: str | os.PathLike, sha256: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in the same folder, renamed into place
    (``os.replace``) only when the whole body arrived and its SHA-256 equals ``sha256``. On any
    failure (HTTP error, dropped connection, short body, checksum mismatch, interrupt) the
    temporary file is deleted and :class:`DataError` is raised (``KeyboardInterrupt`` re-raised)."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as error:
        raise DataError(f"{dest.parent}: cannot write the download of {url} there "
                        f"({error.strerror or type(error).__name__})") from None
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise DataError(f"{url}: connection closed after {size} of {total} bytes; nothing "
                            f"was written to {dest}")
        if digest.hexdigest() != sha256:
            raise DataError(f"{url}: SHA-256 mismatch (expected {sha256}, got "
                            f"{digest.hexdigest()}); nothing was written to {dest}")
        os.replace(tmp, dest)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, DataError | KeyboardInterrupt | SystemExit):
            raise
        raise DataError(f"{url}: download failed ({type(error).__name__}: {error}); "
                        f"nothing was written to {dest}") from error
    return dest


def default_cache_dir() -> Path:
    """``$MMLREPRO_CACHE_DIR``, else ``~/.cache/mmlrepro``."""
    return Path(os.environ.get("MMLREPRO_CACHE_DIR") or Path.home() / ".cache" / "mmlrepro")


def _cache_dir(cache_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The cache folder and where it came from, for messages."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser(), "cache_dir="
    if os.environ.get("MMLREPRO_CACHE_DIR"):
        return default_cache_dir(), "MMLREPRO_CACHE_DIR="
    return default_cache_dir(), "the default cache folder "


def _check_folder(folder: Path, label: str) -> None:
    """DataError unless ``folder`` is an existing folder; ``label`` names where it came from."""
    if folder.is_dir():
        return
    if folder.exists():
        raise DataError(f"{label}{folder} is a file, not a folder")
    raise DataFileNotFoundError(f"{label}{folder} does not exist (a typo?)")


def _check_cache(cache: Path, label: str, name: str) -> None:
    """DataError, before any download, if ``<cache>/<name>`` cannot be a folder (it, or a folder
    above it, is a file) or a cached ``train.txt``/``test.txt`` is not a regular file."""
    folder = cache / name
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise DataError(f"{label}{cache} cannot hold the cache: {path} is a file, not a "
                                f"folder")
            break
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if path.exists() and not path.is_file():
            raise DataError(f"{path}: is not a regular file ({label}{cache})")


def _holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds ``train.txt`` and ``test.txt``; DataError if one of them is there
    but is a folder (or anything not a regular file)."""
    paths = [folder / f"{split}.txt" for split in SPLITS]
    for path in paths:
        if path.exists() and not path.is_file():
            raise DataError(f"{path}: is a folder, not a data file" if path.is_dir()
                            else f"{path}: is not a regular file")
    return all(path.is_file() for path in paths)


def _check_copy(folder: Path, name: str) -> None:
    paths = [folder / f"{split}.txt" for split in SPLITS]
    changed = [str(p) for p in paths if sha256_file(p) != SHA256.get(f"{name}/{p.name}")]
    if changed:
        warnings.warn(f"{', '.join(changed)} differ from the public {name} files (SHA-256 "
                      "mismatch); using them as they are", stacklevel=4)


def _fetch(name: str, cache_dir: str | os.PathLike | None, download: bool,
           base_url: str | None, looked: list[str]) -> Path | None:
    cache, label = _cache_dir(cache_dir)
    _check_cache(cache, label, name)
    folder = cache / name
    missing = [s for s in SPLITS
               if not (folder / f"{s}.txt").is_file()
               or sha256_file(folder / f"{s}.txt") != SHA256[f"{name}/{s}.txt"]]
    looked.append(str(folder))
    if missing and not download:
        return None
    base = (base_url or os.environ.get("MMLREPRO_DATA_URL") or BASE_URL).rstrip("/")
    for split in missing:
        download_file(f"{base}/{name}/{split}.txt", folder / f"{split}.txt",
                      SHA256[f"{name}/{split}.txt"])
    return folder


def _load_folder(key: str) -> Dataset:
    """A dataset from a folder holding ``train.txt`` and ``test.txt`` (named after the folder)."""
    folder = Path(key).expanduser()
    head = (f"{key!r} is not a known dataset ({', '.join(NAMES)}) nor a folder with train.txt "
            f"and test.txt")
    if not folder.is_dir():
        if folder.exists():
            raise DataError(f"{head}: {folder} is a file")
        raise DataFileNotFoundError(f"{head}: no folder {folder}")
    if not _holds_files(folder):
        missing = [str(folder / f"{s}.txt") for s in SPLITS if not (folder / f"{s}.txt").is_file()]
        raise DataFileNotFoundError(f"{head}: missing {', '.join(missing)}")
    return read_split_files(folder / "train.txt", folder / "test.txt", folder.resolve().name)


def _find_named(name: str, data_dir: Path | None, cache_dir: str | os.PathLike | None,
                download: bool, base_url: str | None) -> Path:
    """The folder holding the files of a named dataset, in :func:`load_dataset`'s order."""
    looked: list[str] = []
    candidates = [data_dir / name, data_dir] if data_dir is not None else []
    if os.environ.get("MMLREPRO_DATA_DIR"):
        env = Path(os.environ["MMLREPRO_DATA_DIR"]).expanduser()
        _check_folder(env, "MMLREPRO_DATA_DIR=")
        candidates.append(env / name)
    for folder in candidates:
        looked.append(str(folder))
        if _holds_files(folder):
            _check_copy(folder, name)
            return folder
    folder = _fetch(name, cache_dir, download, base_url, looked)
    if folder is None:
        raise DataFileNotFoundError(f"{name}: train.txt and test.txt not found (looked in "
                                    f"{', '.join(looked)}) and download=False")
    return folder


def load_dataset(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, download: bool = True,
                 base_url: str | None = None) -> Dataset:
    """Load ``"gowalla"``, ``"yelp2018"``, or any folder holding ``train.txt`` and ``test.txt``.

    For a named dataset the files are taken from the first place that has both (SPEC §2):

    1. ``data_dir`` (``<data_dir>/<name>/`` or ``<data_dir>/`` itself),
    2. ``$MMLREPRO_DATA_DIR/<name>/``,
    3. the cache ``<cache_dir>/<name>/`` (``cache_dir``, else ``$MMLREPRO_CACHE_DIR``, else
       ``~/.cache/mmlrepro``), if both files there match their SHA-256,
    4. a download (``download=True``) from ``<base_url>/<name>/{train,test}.txt`` (``base_url``,
       else ``$MMLREPRO_DATA_URL``, else the LightGCN repository) into the cache, checked against
       the SHA-256 table ``SHA256`` (see :func:`download_file`).

    A copy found in 1 or 2 whose checksum differs from the public file gives a warning, not an
    error (a user may have modified it). Anything not a known name is a folder path.

    Checked before anything is read or downloaded (:class:`DataError`): ``data_dir``, when given,
    must be an existing folder (whatever the dataset); ``$MMLREPRO_DATA_DIR``, when set and a named
    dataset is asked for, too (a typo is not silently replaced by a download); a ``train.txt`` or
    ``test.txt`` that is a folder is an error, not skipped; a cache folder that is a file (or
    under one) is an error before any download. Any other ``OSError`` (a folder that cannot be
    searched, say) becomes a one-line :class:`DataError` naming the path.
    """
    key = os.fspath(name_or_path)
    folder = None if data_dir is None else Path(data_dir).expanduser()
    try:
        if folder is not None:
            _check_folder(folder, "data_dir=")
        if key not in NAMES:
            return _load_folder(key)
        found = _find_named(key, folder, cache_dir, download, base_url)
        return read_split_files(found / "train.txt", found / "test.txt", key)
    except OSError as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{error.filename or key}: cannot be accessed "
                        f"({error.strerror or type(error).__name__})") from None


def dataset_fingerprint(name_or_folder: str | os.PathLike,
                        data_dir: str | os.PathLike | None = None) -> str:
    """:attr:`Dataset.fingerprint` of a named dataset, a folder, or a ``synthetic`` spec.

    It parses the files (about 0.1 s for Gowalla), so no fingerprint cache is kept.
    """
    return load_named_or_synthetic(name_or_folder, data_dir=data_dir).fingerprint


# ---------------------------------------------------------------------------------------------
# Synthetic data


def synthetic(n_users: int = 500, n_items: int = 800, dim: int = 8, avg_items: int = 20,
              test_fraction: float = 0.2, popularity_skew: float = 1.0, seed: int = 0,
              name: str = "synthetic", temperature: float = 0.2) -> Dataset:
    """A small dataset with planted low-rank preferences and Zipf-like popularity, for tests/demos.

    Users and items get unit vectors ``p_u, q_i`` in ``R^dim`` (Gaussian, normalised); item ``i``
    has popularity ``π_i ∝ 1 / rank_i`` (ranks a random permutation). User ``u`` draws
    ``L_u = clip(Poisson(avg_items), 3, n_items // 2)`` distinct items from
    ``softmax_i(p_u·q_i / temperature + popularity_skew · log π_i)`` without replacement (Gumbel
    top-k). ``max(1, floor(test_fraction·L_u + 0.5))`` of them, at random, go to test, capped so
    that >= 2 stay in train. Deterministic given ``seed`` [assumed generator, project's own].
    """
    if min(n_users, dim, avg_items) < 1 or n_items < 6:
        raise ValueError("need n_users, dim, avg_items >= 1 and n_items >= 6")
    if not 0.0 < test_fraction < 1.0 or temperature <= 0 or popularity_skew < 0:
        raise ValueError("need 0 < test_fraction < 1, temperature > 0, popularity_skew >= 0")
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n_users, dim))
    q = rng.standard_normal((n_items, dim))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    log_pop = -np.log1p(rng.permutation(n_items))
    lengths = np.clip(rng.poisson(avg_items, n_users), 3, n_items // 2)
    keys = p @ q.T / temperature + popularity_skew * log_pop + rng.gumbel(size=(n_users, n_items))
    top = np.argsort(-keys, axis=1)[:, : lengths.max()]  # per user, items by decreasing key
    chosen = top[np.arange(lengths.max()) < lengths[:, None]]  # row-major: grouped by user
    users = np.repeat(np.arange(n_users), lengths)
    order = np.lexsort((rng.random(len(users)), users))  # shuffle within each user
    chosen = chosen[order]
    n_test = np.minimum(np.maximum(np.floor(test_fraction * lengths + 0.5), 1), lengths - 2)
    rank = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    is_test = rank < np.repeat(n_test, lengths)
    train = _csr_from_rows(users[~is_test], chosen[~is_test], n_users)
    test = _csr_from_rows(users[is_test], chosen[is_test], n_users)
    return Dataset(name, n_users, n_items, *train, *test)


_SYNTHETIC_USAGE = "expected synthetic, synthetic:USERS or synthetic:USERS:ITEMS (e.g. synthetic:500:800)"


def parse_synthetic(spec: str) -> dict[str, int] | None:
    """The :func:`synthetic` sizes of a dataset spec, or None if ``spec`` is not one.

    Only exactly ``"synthetic"`` or a string starting ``"synthetic:"`` is a spec (a folder named
    ``synthetic_mine`` is not; write ``./synthetic`` for a folder named ``synthetic``):
    ``synthetic`` -> the defaults, ``synthetic:USERS``, ``synthetic:USERS:ITEMS``, each size a
    run of ASCII digits. Returns ``{"n_users": U, "n_items": I}``. Raises :class:`DataError`
    naming the spec for anything else: a size that is not a whole number, more than two sizes,
    ``USERS < 1``, ``ITEMS < 6`` (what :func:`synthetic` needs), or ``USERS x ITEMS`` over
    ``SYNTHETIC_MAX_CELLS`` (the generator works on dense ``USERS x ITEMS`` arrays).
    """
    if spec != "synthetic" and not spec.startswith("synthetic:"):
        return None
    fields = spec.split(":")[1:]
    if len(fields) > 2:
        raise DataError(f"dataset {spec!r}: {len(fields)} sizes; {_SYNTHETIC_USAGE}")
    for field in fields:
        if not re.fullmatch(r"[0-9]+", field):
            raise DataError(f"dataset {spec!r}: size {field!r} is not a whole number; "
                            f"{_SYNTHETIC_USAGE}")
    defaults = inspect.signature(synthetic).parameters
    sizes = {key: defaults[key].default for key in ("n_users", "n_items")}
    sizes.update(zip(("n_users", "n_items")[: len(fields)], map(int, fields), strict=True))
    if sizes["n_users"] < 1 or sizes["n_items"] < 6:
        raise DataError(f"dataset {spec!r}: needs USERS >= 1 and ITEMS >= 6, got "
                        f"{sizes['n_users']} users and {sizes['n_items']} items")
    if sizes["n_users"] * sizes["n_items"] > SYNTHETIC_MAX_CELLS:
        raise DataError(f"dataset {spec!r}: USERS x ITEMS = {sizes['n_users'] * sizes['n_items']:,}"
                        f" is over {SYNTHETIC_MAX_CELLS:,} (the generator's dense arrays)")
    return sizes


def load_named_or_synthetic(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                            cache_dir: str | os.PathLike | None = None,
                            download: bool = True) -> Dataset:
    """:func:`synthetic` for a ``synthetic[:USERS[:ITEMS]]`` string (see :func:`parse_synthetic`),
    else :func:`load_dataset` (a known name or a folder; a ``PathLike`` is always a folder)."""
    sizes = parse_synthetic(spec) if isinstance(spec, str) else None
    if sizes is not None:
        return synthetic(**sizes)
    return load_dataset(spec, data_dir=data_dir, cache_dir=cache_dir, download=download)
