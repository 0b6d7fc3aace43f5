"""Bad input to mmlrepro.data: every case is a one-line DataError naming what is wrong (issue 15)."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from datafiles import write_pair

from mmlrepro import data
from mmlrepro.data import (
    DataError,
    DataFileNotFoundError,
    Dataset,
    load_dataset,
    load_named_or_synthetic,
    parse_synthetic,
    sources,
    synthetic,
)


def error_of(call, *args, kind=DataError, **kwargs) -> str:
    """The message of the ``kind`` error ``call`` raises; it must be one line."""
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything tries to download; no data folder from the environment."""
    def forbidden(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")
    monkeypatch.setattr(sources, "download_file", forbidden)
    monkeypatch.delenv("MMLREPRO_DATA_DIR", raising=False)
    monkeypatch.delenv("MMLREPRO_CACHE_DIR", raising=False)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
    assert issubclass(DataFileNotFoundError, DataError)
    assert issubclass(DataFileNotFoundError, FileNotFoundError)


# ---------------------------------------------------------------------------------------------
# 1. huge ids: < 2^31, and no huge gaps in the id range


HUGE = [  # (train, test, file that is wrong, line, words)
    ("0 1 2\n1 100000000000000\n", "0 1\n", "train.txt", 2,
     "id 100000000000000 is out of range (ids must be < 2^31 = 2147483648)"),
    ("0 1 2\n", "0 1\n\n100000000000000 2\n", "test.txt", 3, "id 100000000000000 is out of range"),
    ("2147483648 1\n", "0 1\n", "train.txt", 1, "id 2147483648 is out of range"),
    ("0 1\n1 99999999999999999999999\n", "0 1\n", "train.txt", 2, "more than 18 digits"),
    # below 2^31, but the arrays would be sized by the largest id
    ("0 1\n2147483647 0\n", "0 1\n", "train.txt", 2, "user id 2,147,483,647 makes 2,147,483,648 "
     "users for 2 distinct user ids; ids must count from 0"),
    ("0 1\n1 2 3000000\n", "0 1\n", "train.txt", 2, "item id 3,000,000 makes 3,000,001 items"),
    ("0 1\n1 2\n", "0 1\n5000000 2\n", "test.txt", 2, "user id 5,000,000 makes 5,000,001 users"),
]


@pytest.mark.parametrize("train, test, bad_file, line, words", HUGE)
def test_huge_ids_name_file_and_line(tmp_path, train, test, bad_file, line, words):
    folder = write_pair(tmp_path / "huge", train, test)
    message = error_of(load_dataset, folder)
    assert message.startswith(f"{folder / bad_file}, line {line}: ")
    assert words in message


def test_ids_up_to_2_pow_20_are_accepted(tmp_path):
    folder = write_pair(tmp_path / "sparse", f"0 1\n1 {2**20 - 1}\n", f"{2**20 - 1} 1\n")
    ds = load_dataset(folder)
    assert (ds.n_users, ds.n_items) == (2**20, 2**20)


# ---------------------------------------------------------------------------------------------
# 2. files that cannot be read, 8. a folder in place of a file


def test_permission_denied_names_the_file(tmp_path, monkeypatch):
    folder = write_pair(tmp_path / "locked", "0 1\n", "0 0\n")
    locked = folder / "test.txt"
    read_bytes = Path.read_bytes

    def deny(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert error_of(load_dataset, folder) == f"{locked}: cannot be read (Permission denied)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads chmod 000 files")
def test_chmod_000_names_the_file(tmp_path):
    folder = write_pair(tmp_path / "locked", "0 1\n", "0 0\n")
    (folder / "train.txt").chmod(0)
    try:
        assert error_of(load_dataset, folder) == f"{folder / 'train.txt'}: cannot be read (Permission denied)"
    finally:
        (folder / "train.txt").chmod(0o644)


def test_unreadable_named_copy_names_the_file(tmp_path, monkeypatch, no_download):
    folder = write_pair(tmp_path / "data" / "gowalla", "0 1\n", "0 0\n")
    real_open = open

    def deny(path, *args, **kwargs):
        if Path(path) == folder / "train.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(sources, "open", deny, raising=False)  # sha256_file's open
    message = error_of(load_dataset, "gowalla", data_dir=tmp_path / "data", cache_dir=tmp_path / "c")
    assert message == f"{folder / 'train.txt'}: cannot be read (Permission denied)"


def test_folder_in_place_of_a_file(tmp_path, no_download):
    folder = write_pair(tmp_path / "d", "0 1\n", "0 0\n")
    (folder / "test.txt").unlink()
    (folder / "test.txt").mkdir()
    assert error_of(data.parse_lightgcn, folder / "test.txt") == (
        f"{folder / 'test.txt'}: is a folder, not a data file")
    assert error_of(load_dataset, folder) == f"{folder / 'test.txt'}: is a folder, not a data file"
    named = tmp_path / "data" / "gowalla"
    write_pair(named, "0 1\n", "0 0\n")
    (named / "train.txt").unlink()
    (named / "train.txt").mkdir()
    message = error_of(load_dataset, "gowalla", data_dir=tmp_path / "data", cache_dir=tmp_path / "c")
    assert message == f"{named / 'train.txt'}: is a folder, not a data file"  # not skipped


def test_folder_that_cannot_be_searched(tmp_path, monkeypatch, no_download):
    locked = tmp_path / "locked" / "data"
    is_dir = Path.is_dir

    def deny(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return is_dir(self)

    monkeypatch.setattr(Path, "is_dir", deny)
    message = error_of(load_dataset, "gowalla", data_dir=locked, cache_dir=tmp_path / "c")
    assert message == f"{locked}: cannot be accessed (Permission denied)"


def test_folder_dataset_that_is_a_file_or_missing(tmp_path):
    (tmp_path / "file.txt").write_text("0 1\n")
    message = error_of(load_dataset, tmp_path / "file.txt")
    assert "is not a known dataset" in message and f"{tmp_path / 'file.txt'} is a file" in message
    message = error_of(load_dataset, tmp_path / "nowhere", kind=DataFileNotFoundError)
    assert f"no folder {tmp_path / 'nowhere'}" in message


# ---------------------------------------------------------------------------------------------
# 3. the cache folder is a file: an error before any download


def test_cache_folder_that_is_a_file(tmp_path, monkeypatch, no_download):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("MMLREPRO_CACHE_DIR", str(cache))
    for download in (True, False):
        message = error_of(load_dataset, "gowalla", download=download)
        assert message == (f"MMLREPRO_CACHE_DIR={cache} cannot hold the cache: {cache} is a file, "
                           f"not a folder")
    monkeypatch.delenv("MMLREPRO_CACHE_DIR")
    message = error_of(load_dataset, "yelp2018", cache_dir=cache / "below")
    assert message.startswith(f"cache_dir={cache / 'below'} cannot hold the cache: {cache} is a file")
    other = tmp_path / "other"
    (other / "gowalla").mkdir(parents=True)
    (other / "gowalla" / "test.txt").mkdir()
    message = error_of(load_dataset, "gowalla", cache_dir=other)
    assert message == f"{other / 'gowalla' / 'test.txt'}: is not a regular file (cache_dir={other})"
    assert sorted(p.name for p in other.rglob("*")) == ["gowalla", "test.txt"]


def test_unwritable_cache_leaves_nothing(tmp_path, monkeypatch):
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", deny)
    dest = tmp_path / "cache" / "gowalla" / "train.txt"
    message = error_of(data.download_file, "http://127.0.0.1:9/x", dest, "0" * 64)
    assert message == (f"{dest.parent}: cannot write the download of http://127.0.0.1:9/x there "
                       f"(Permission denied)")
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 4. MMLREPRO_DATA_DIR, 5. data_dir: a typo is an error, not a download


def test_data_dir_from_the_environment_must_exist(tmp_path, monkeypatch, no_download):
    typo = tmp_path / "dta"
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(typo))
    message = error_of(load_dataset, "gowalla", cache_dir=tmp_path / "c", kind=DataFileNotFoundError)
    assert message == f"MMLREPRO_DATA_DIR={typo} does not exist (a typo?)"
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(tmp_path / "f"))
    assert error_of(load_dataset, "gowalla") == f"MMLREPRO_DATA_DIR={tmp_path / 'f'} is a file, not a folder"
    # an existing folder without this dataset still falls through to the cache
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(tmp_path / "empty"))
    message = error_of(load_dataset, "gowalla", cache_dir=tmp_path / "c", download=False,
                       kind=DataFileNotFoundError)
    assert str(tmp_path / "empty" / "gowalla") in message and str(tmp_path / "c" / "gowalla") in message
    # a folder dataset does not need MMLREPRO_DATA_DIR
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(typo))
    assert load_dataset(write_pair(tmp_path / "mine", "0 1\n", "0 0\n")).n_items == 2


def test_explicit_data_dir_must_exist(tmp_path, no_download):
    typo = tmp_path / "dta"
    for dataset in ("gowalla", write_pair(tmp_path / "mine", "0 1\n", "0 0\n")):
        message = error_of(load_dataset, dataset, data_dir=typo, cache_dir=tmp_path / "c",
                           kind=DataFileNotFoundError)
        assert message == f"data_dir={typo} does not exist (a typo?)"
    (tmp_path / "f").write_text("")
    assert error_of(load_dataset, "gowalla", data_dir=tmp_path / "f") == (
        f"data_dir={tmp_path / 'f'} is a file, not a folder")
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------------------------
# 6. synthetic specs


@pytest.mark.parametrize("spec, sizes", [
    ("synthetic", {"n_users": 500, "n_items": 800}),
    ("synthetic:300", {"n_users": 300, "n_items": 800}),
    ("synthetic:300:400", {"n_users": 300, "n_items": 400}),
    ("synthetic:1:6", {"n_users": 1, "n_items": 6}),
])
def test_parse_synthetic_good(spec, sizes):
    assert parse_synthetic(spec) == sizes


@pytest.mark.parametrize("spec", ["gowalla", "synthetic_mine", "synthetic-data", "./synthetic",
                                  "Synthetic", "synthetics:3:4", "data/synthetic:3:4", ""])
def test_parse_synthetic_other_names(spec):
    assert parse_synthetic(spec) is None


@pytest.mark.parametrize("spec, words", [
    ("synthetic:abc", "size 'abc' is not a whole number; expected synthetic, synthetic:USERS or "
                      "synthetic:USERS:ITEMS"),
    ("synthetic:", "size '' is not a whole number"),
    ("synthetic:300:", "size '' is not a whole number"),
    ("synthetic:-5:10", "size '-5' is not a whole number"),
    ("synthetic:5:-10", "size '-10' is not a whole number"),
    ("synthetic: 5:10", "size ' 5' is not a whole number"),
    ("synthetic:1e3:10", "size '1e3' is not a whole number"),
    ("synthetic:5_000:10", "size '5_000' is not a whole number"),
    ("synthetic:2.5:10", "size '2.5' is not a whole number"),
    ("synthetic:1:2:3:4", "4 sizes; expected synthetic"),
    ("synthetic:0:5", "needs USERS >= 1 and ITEMS >= 6, got 0 users and 5 items"),
    ("synthetic:10:5", "needs USERS >= 1 and ITEMS >= 6, got 10 users and 5 items"),
    ("synthetic:0", "got 0 users and 800 items"),
    ("synthetic:100000:100000", "USERS x ITEMS = 10,000,000,000 is over 10,000,000"),
])
def test_parse_synthetic_bad(spec, words):
    message = error_of(parse_synthetic, spec)
    assert message.startswith(f"dataset {spec!r}: ") and words in message


def test_load_named_or_synthetic(tmp_path, monkeypatch):
    ds = load_named_or_synthetic("synthetic:300:400")
    assert ds.fingerprint == synthetic(300, 400).fingerprint and ds.name == "synthetic"
    assert load_named_or_synthetic("synthetic").fingerprint == synthetic().fingerprint
    monkeypatch.chdir(tmp_path)
    write_pair(tmp_path / "synthetic_mine", "0 1\n", "0 0\n")
    write_pair(tmp_path / "synthetic", "0 1 2\n", "0 0\n")
    assert load_named_or_synthetic("synthetic_mine").name == "synthetic_mine"
    assert load_named_or_synthetic(Path("synthetic")).n_items == 3  # a Path is a folder
    assert load_named_or_synthetic("./synthetic").n_items == 3
    message = error_of(load_named_or_synthetic, "synthetic:abc")
    assert message.startswith("dataset 'synthetic:abc': ")


# ---------------------------------------------------------------------------------------------
# 7. fewer items than K


def test_check_for_ranking(tmp_path, synthetic_dataset):
    synthetic_dataset.check_for_ranking((20, 50))
    small = load_dataset(write_pair(tmp_path / "small", "0 " + " ".join(map(str, range(30))) + "\n",
                                    "0 1\n"))
    message = error_of(small.check_for_ranking, (20, 50))
    assert message == ("dataset 'small' has 30 items, too few for K = 50: the evaluation ranks all "
                       "items, so Recall@50 and NDCG@50 need more than K items")
    small.check_for_ranking([20, 29])
    assert "K = 30" in error_of(small.check_for_ranking, [30])
    small.check_for_ranking(())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="K must be a positive integer"):
            small.check_for_ranking([20, bad])
    small.check_for_ranking([np.int64(20)])
    tiny = Dataset("tiny", 1, 6, np.array([0, 1]), np.array([0]), np.array([0, 1]), np.array([1]))
    assert "'tiny' has 6 items, too few for K = 50" in error_of(tiny.check_for_ranking)


# ---------------------------------------------------------------------------------------------
# 8. other bad bytes


BYTES = [  # (train bytes, line, words)
    (b"0 1 2\n1 3 \xff\xfe 4\n", 2, "non-ASCII byte 0xff in token b'\\xff\\xfe' (the format is"),
    ("0 1\n1 caf\u00e9\n".encode("latin-1"), 2, "non-ASCII byte 0xe9 in token b'caf\\xe9'"),
    (b"\xef\xbb\xbf0 1 2\n", 1, "non-ASCII byte 0xef in token b'\\xef\\xbb\\xbf0'"),  # a UTF-8 byte-order mark
    (b"0,1,2\n", 1, "non-integer token '0,1,2'"),
    (b"0 1\x002\n", 1, "non-integer token '1\\x002'"),
    (b"\x1f\x8b" + bytes(range(128, 256)) * 40, 1, "non-ASCII byte 0x8b in token b'\\x1f\\x8b\\x80\\x81"),  # gzip-like
]


@pytest.mark.parametrize("train, line, words", BYTES)
def test_bad_bytes_name_file_and_line(tmp_path, train, line, words):
    folder = write_pair(tmp_path / "b", train, "0 1\n")
    message = error_of(load_dataset, folder)
    assert message.startswith(f"{folder / 'train.txt'}, line {line}: ") and words in message
    assert len(message) < len(str(folder)) + 250  # a long token is cut


def test_users_only_in_test_are_kept(tmp_path):
    """[assumed] a test user with no train line is accepted, with an empty train row."""
    ds = load_dataset(write_pair(tmp_path / "t", "0 1 2\n", "0 1\n3 2\n"))
    assert ds.n_users == 4 and np.diff(ds.train_indptr).tolist() == [2, 0, 0, 0]
    assert np.diff(ds.test_indptr).tolist() == [1, 0, 0, 1]
