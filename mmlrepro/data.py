"""Datasets: LightGCN-format loading, download with a checksummed cache, synthetic data (SPEC §2).

File format (SPEC §2): one line per user, ``user_id item_id item_id ...``, ids from 0, separated
by spaces. ``load_dataset`` reads it into a :class:`Dataset` whose interactions are CSR numpy int64
arrays. Id ranges, the rule this module enforces [assumed, checked on the real files]:

- ``n_users = max(user id in train, user id in test) + 1`` (users with no line get empty rows);
- ``n_items = max(item id in train) + 1``; a test item ``>= n_items`` was never seen in training
  and is an error naming the test file and line (it holds for Gowalla and Yelp2018, whose test
  items all occur in train, which is why MML Table 1's item counts come out exactly).

Tolerated: CRLF line endings, tabs and trailing spaces, blank lines, a user line with no items.
Errors (:class:`DataError`, a ``ValueError``, always naming the file and, where there is one, the
line): a non-integer token, a negative id, an id over 18 digits, a user with two lines, a test item
never seen in train, a file with no interactions, a missing file (:class:`DataFileNotFoundError`,
also a ``FileNotFoundError``, saying where it looked), a download that fails or whose SHA-256
differs from the table below.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

NAMES = ("gowalla", "yelp2018")
SPLITS = ("train", "test")
BASE_URL = "https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data"

# SHA-256 of the public LightGCN files (SPEC §2; byte-identical to shared/data, see SHA256SUMS).
SHA256 = MappingProxyType({
    "gowalla/train.txt": "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
    "gowalla/test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
    "yelp2018/train.txt": "1e9568725a9e833d0ac3bae01c94cd95367f73b3bb6104fd26b5f65ea5054093",
    "yelp2018/test.txt": "9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe",
})


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


def _token_at(buf: np.ndarray, pos: int) -> str:
    space = np.flatnonzero(np.isin(buf, (9, 10, 13, 32)))
    start = space[space < pos][-1] + 1 if np.any(space < pos) else 0
    end = space[space > pos][0] if np.any(space > pos) else len(buf)
    return bytes(buf[start:end]).decode("utf-8", "replace")


def parse_lightgcn(path: str | os.PathLike) -> _Parsed:
    """Parse one LightGCN-format file, vectorised over the bytes (no Python loop over lines).

    Every token must be a run of ASCII digits; whitespace is space, tab, CR or LF, so CRLF,
    trailing spaces and blank lines are accepted. The first token of a line is the user id, the
    rest its items. Raises :class:`DataError` with file and line on anything else.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileNotFoundError(f"{path}: no such file") from None
    buf = np.frombuffer(raw, np.uint8)
    digit = (buf >= 48) & (buf <= 57)
    space = (buf == 32) | (buf == 10) | (buf == 13) | (buf == 9)
    bad = ~(digit | space)
    if bad.any():
        pos = int(np.argmax(bad))
        token = _token_at(buf, pos)
        what = ("negative id" if token.startswith("-") and token[1:].isdigit()
                else "non-integer token")
        raise DataError(f"{path}, line {_line_of(buf, pos)}: {what} {token!r}")

    starts = np.flatnonzero(digit & ~np.concatenate(([False], digit[:-1])))
    ends = np.flatnonzero(digit & ~np.concatenate((digit[1:], [False])))
    long = ends - starts >= _DIGIT_LIMIT
    if long.any():
        pos = int(starts[np.argmax(long)])
        raise DataError(f"{path}, line {_line_of(buf, pos)}: id {_token_at(buf, pos)!r} has "
                        f"more than {_DIGIT_LIMIT} digits")
    # Every byte is now a digit or whitespace, and numpy's C reader agrees with bytes.split()
    # there as long as there is at least one token (checked just below).
    values = np.fromstring(raw, dtype=np.int64, sep=" ") if len(starts) else starts
    if len(values) != len(starts):  # never expected; the slow exact path
        values = np.array([int(t) for t in raw.split()], dtype=np.int64)
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


def read_split_files(train_path: str | os.PathLike, test_path: str | os.PathLike,
                     name: str) -> Dataset:
    """Build a :class:`Dataset` from a train and a test file, with the id rules of this module."""
    train, test = parse_lightgcn(train_path), parse_lightgcn(test_path)
    for parsed in (train, test):
        _check_duplicates(parsed)
        if len(parsed.items) == 0:
            raise DataError(f"{parsed.path}: no interactions (empty dataset)")
    n_users = int(max(train.users.max(), test.users.max())) + 1
    n_items = int(train.items.max()) + 1
    unseen = test.items >= n_items
    if unseen.any():
        i = int(np.argmax(unseen))
        line = int(np.repeat(test.lines, test.counts)[i])
        raise DataError(f"{test.path}, line {line}: test item {test.items[i]} is outside the "
                        f"item range [0, {n_items}) of the train file {train.path} "
                        f"(an item never seen in training)")
    csr = [_csr_from_rows(np.repeat(p.users, p.counts), p.items, n_users) for p in (train, test)]
    return Dataset(name, n_users, n_items, *csr[0], *csr[1])


# ---------------------------------------------------------------------------------------------
# Finding and downloading the files


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | os.PathLike, sha256: str, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in the same folder, renamed into place
    (``os.replace``) only when the whole body arrived and its SHA-256 equals ``sha256``. On any
    failure (HTTP error, dropped connection, short body, checksum mismatch, interrupt) the
    temporary file is deleted and :class:`DataError` is raised (``KeyboardInterrupt`` re-raised)."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
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


def _has_files(folder: Path) -> bool:
    return all((folder / f"{split}.txt").is_file() for split in SPLITS)


def _check_copy(folder: Path, name: str) -> None:
    paths = [folder / f"{split}.txt" for split in SPLITS]
    changed = [str(p) for p in paths if sha256_file(p) != SHA256.get(f"{name}/{p.name}")]
    if changed:
        warnings.warn(f"{', '.join(changed)} differ from the public {name} files (SHA-256 "
                      "mismatch); using them as they are", stacklevel=3)


def _fetch(name: str, cache_dir: Path, download: bool, base_url: str | None,
           looked: list[str]) -> Path | None:
    folder = cache_dir / name
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
    """
    key = os.fspath(name_or_path)
    if key not in NAMES:
        folder = Path(key).expanduser()
        if not _has_files(folder):
            missing = [str(folder / f"{s}.txt") for s in SPLITS
                       if not (folder / f"{s}.txt").is_file()]
            raise DataFileNotFoundError(f"{key!r} is not a known dataset ({', '.join(NAMES)}) "
                                        f"nor a folder with train.txt and test.txt: missing "
                                        f"{', '.join(missing)}")
        return read_split_files(folder / "train.txt", folder / "test.txt", folder.resolve().name)

    looked: list[str] = []
    candidates = []
    if data_dir is not None:
        candidates += [Path(data_dir).expanduser() / key, Path(data_dir).expanduser()]
    if os.environ.get("MMLREPRO_DATA_DIR"):
        candidates.append(Path(os.environ["MMLREPRO_DATA_DIR"]).expanduser() / key)
    for folder in candidates:
        looked.append(str(folder))
        if _has_files(folder):
            _check_copy(folder, key)
            return read_split_files(folder / "train.txt", folder / "test.txt", key)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = _fetch(key, cache, download, base_url, looked)
    if folder is None:
        raise DataFileNotFoundError(f"{key}: train.txt and test.txt not found (looked in "
                                    f"{', '.join(looked)}) and download=False")
    return read_split_files(folder / "train.txt", folder / "test.txt", key)


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
