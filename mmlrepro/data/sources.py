"""Where datasets come from: local copies, the checksummed cache, the download (SPEC §2).

:func:`load_dataset` finds a named dataset's LightGCN files (``data_dir``, ``$MMLREPRO_DATA_DIR``,
the cache, else a download checked against :data:`SHA256`) or reads any folder holding
``train.txt`` and ``test.txt``; :func:`load_named_or_synthetic` also takes a ``synthetic`` spec.
:data:`KNOWN_FINGERPRINTS` are the fingerprints of the public files (they enter run keys).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
from pathlib import Path
from types import MappingProxyType

from mmlrepro.data.dataset import SPLITS, Dataset
from mmlrepro.data.errors import DataError, DataFileNotFoundError, read_error
from mmlrepro.data.lightgcn import read_split_files
from mmlrepro.data.synthetic_data import parse_synthetic, synthetic

NAMES = ("yelp2018", "gowalla")  # the order of the paper's tables
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (:class:`DataError` naming it if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise read_error(Path(path), error) from None
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


def load_named_or_synthetic(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                            cache_dir: str | os.PathLike | None = None,
                            download: bool = True) -> Dataset:
    """:func:`synthetic` for a ``synthetic[:USERS[:ITEMS]]`` string (see :func:`parse_synthetic`),
    else :func:`load_dataset` (a known name or a folder; a ``PathLike`` is always a folder)."""
    sizes = parse_synthetic(spec) if isinstance(spec, str) else None
    if sizes is not None:
        return synthetic(**sizes)
    return load_dataset(spec, data_dir=data_dir, cache_dir=cache_dir, download=download)
