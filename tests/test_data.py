"""Tests of mmlrepro.data: parsing, errors, sources and download, Dataset helpers, synthetic."""

import hashlib
import http.server
import threading
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
    sources,
    synthetic,
)

# ---------------------------------------------------------------------------------------------
# helpers


def rows(indptr: np.ndarray, indices: np.ndarray) -> list[list[int]]:
    return [indices[indptr[u]:indptr[u + 1]].tolist() for u in range(len(indptr) - 1)]


def naive_rows(text: str, n_users: int) -> list[list[int]]:
    """Reference parser: one dict entry per line."""
    out: list[list[int]] = [[] for _ in range(n_users)]
    for line in text.splitlines():
        tokens = [int(t) for t in line.split()]
        if tokens:
            out[tokens[0]] = tokens[1:]
    return out


def tiny() -> Dataset:
    """Users 0..3, items 0..5; user 2 has one train item, user 3 none, user 1 no test items."""
    return Dataset("tiny", 4, 6,
                   np.array([0, 3, 5, 6, 6]), np.array([0, 1, 2, 3, 4, 5]),
                   np.array([0, 2, 2, 3, 4]), np.array([4, 5, 0, 1]))


# ---------------------------------------------------------------------------------------------
# real data: MML Table 1


TABLE1 = {
    "gowalla": dict(users=29858, items=40981, interactions=1027370, train=810128, test=217242,
                    density=0.00084),
    "yelp2018": dict(users=31668, items=38048, interactions=1561406, train=1237259, test=324147,
                     density=0.00130),
}


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(TABLE1))
def test_table1_exact(name, data_dir, tmp_path):
    ds = load_dataset(name, data_dir=data_dir, cache_dir=tmp_path, download=False)
    stats = ds.stats()
    expected = TABLE1[name]
    assert {k: stats[k] for k in expected if k != "density"} == {
        k: v for k, v in expected.items() if k != "density"}
    assert isinstance(stats["density"], float)
    assert round(stats["density"], 5) == expected["density"]
    assert ds.name == name and ds.train_indices.dtype == np.int64
    # the test file parses exactly as a line-by-line reference parser reads it
    text = (data_dir / name / "test.txt").read_text()
    assert rows(*ds.csr("test")) == naive_rows(text, ds.n_users)
    # the id rule: every test item also occurs in train (so n_items from train is Table 1's)
    assert np.isin(ds.test_indices, ds.train_indices).all()


@pytest.mark.real_data
def test_real_data_from_env(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(data_dir))
    ds = load_dataset("gowalla", cache_dir=tmp_path, download=False)
    assert (ds.n_users, ds.n_items, len(ds.train_indices)) == (29858, 40981, 810128)
    assert list(tmp_path.iterdir()) == []  # nothing cached when the data dir has the files


@pytest.mark.real_data
def test_known_fingerprints_of_the_shared_files(data_dir, tmp_path):
    for name in data.NAMES:
        ds = load_dataset(name, data_dir=data_dir, cache_dir=tmp_path, download=False)
        assert ds.fingerprint == data.KNOWN_FINGERPRINTS[name]
    assert data.dataset_fingerprint("gowalla", data_dir=data_dir) == data.KNOWN_FINGERPRINTS["gowalla"]


# ---------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_is_content_only_and_sensitive(tmp_path):
    ds = tiny()
    fp = ds.fingerprint
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert ds.fingerprint is fp  # cached on the frozen dataclass
    fields = [ds.train_indptr, ds.train_indices, ds.test_indptr, ds.test_indices]
    assert Dataset("other name", 4, 6, *[f.copy() for f in fields]).fingerprint == fp
    assert Dataset("tiny", 4, 6, *[f.astype(np.int32) for f in fields]).fingerprint == fp
    # the same content from files in two folders, under two names
    train, test = "0 0 1 2\n1 3 4\n2 5\n", "0 4 5\n2 0\n3 1\n"
    a = load_dataset(write_pair(tmp_path / "a", train, test))
    b = load_dataset(write_pair(tmp_path / "b" / "c", train.replace("\n", "\r\n"), test))
    assert a.name != b.name and a.fingerprint == b.fingerprint == fp
    assert data.dataset_fingerprint(tmp_path / "a") == fp
    changed = [
        Dataset("t", 4, 6, fields[0], np.array([0, 1, 2, 3, 4, 4]), *fields[2:]),  # an item
        Dataset("t", 4, 6, fields[0], np.array([1, 0, 2, 3, 4, 5]), *fields[2:]),  # the order
        Dataset("t", 4, 6, np.array([0, 2, 5, 6, 6]), *fields[1:]),  # an item moved to a user
        Dataset("t", 4, 6, *fields[:3], np.array([4, 5, 0, 2])),  # a test item
        Dataset("t", 4, 7, *fields),  # one more (unused) item
        Dataset("t", 5, 6, *(np.append(f, f[-1]) if i % 2 == 0 else f
                             for i, f in enumerate(fields))),  # one more (empty) user
    ]
    prints = {d.fingerprint for d in changed}
    assert len(prints) == len(changed) and fp not in prints
    assert synthetic(100, 200, seed=5).fingerprint == synthetic(100, 200, seed=5).fingerprint
    assert synthetic(100, 200, seed=5).fingerprint != synthetic(100, 200, seed=6).fingerprint


# ---------------------------------------------------------------------------------------------
# parsing


def test_parse_tolerates_crlf_tabs_trailing_spaces_blank_lines_empty_users(tmp_path):
    train = "0 3 1 2 \r\n2\t4  0\r\n1\r\n3 5   \r\n\r\n\n"  # user 1: a line with no items
    test = "3 0\n0 4 5\n\n"  # user 2 has no test line
    ds = load_dataset(write_pair(tmp_path / "mine", train, test))
    assert ds.name == "mine"
    assert (ds.n_users, ds.n_items) == (4, 6)
    assert ds.train_indptr.tolist() == [0, 3, 3, 5, 6]
    assert ds.train_indices.tolist() == [3, 1, 2, 4, 0, 5]  # file order within a user
    assert rows(*ds.csr("test")) == [[4, 5], [], [], [0]]
    assert ds.train_users().tolist() == [0, 0, 0, 2, 2, 3]


def test_parse_unsorted_lines_and_user_only_in_test(tmp_path):
    # n_users = max(train users, test users) + 1; user 4 appears only in test
    ds = load_dataset(write_pair(tmp_path / "d", "2 1\n0 0 2\n", "4 1\n0 2"))
    assert (ds.n_users, ds.n_items) == (5, 3)
    assert rows(*ds.csr("train")) == [[0, 2], [], [1], [], []]
    assert rows(*ds.csr("test")) == [[2], [], [], [], [1]]


def test_parse_matches_reference_on_random_files(tmp_path):
    rng = np.random.default_rng(3)
    seps = [" ", "  ", "\t", " \t "]
    for trial in range(5):
        n_users, n_items = 40, 30
        users = rng.permutation(n_users)[: rng.integers(20, n_users)]
        lines = []
        for u in users:
            items = rng.integers(0, n_items, rng.integers(0, 8))
            sep = seps[rng.integers(len(seps))]
            tail = [" ", "", "\t"][rng.integers(3)]
            lines.append(sep.join(map(str, [u, *items])) + tail)
        train = ("\r\n" if trial % 2 else "\n").join(lines) + "\n" * (trial + 1) + f"{n_users} {n_items}\n"
        test = f"0 {n_items - 1}\n"
        ds = load_dataset(write_pair(tmp_path / str(trial), train, test))
        assert ds.n_users == n_users + 1 and ds.n_items == n_items + 1
        assert rows(*ds.csr("train")) == naive_rows(train, ds.n_users)


BAD = [  # (train, test, file that is wrong, line number, words in the message)
    ("0 1 2\n1 x 3\n", "0 1\n", "train.txt", 2, "non-integer token 'x'"),
    ("0 1 2\n1 3\n", "0 1\n1 2.5\n", "test.txt", 2, "non-integer token '2.5'"),
    ("0 1 2\n\n1 -3 2\n", "0 1\n", "train.txt", 3, "negative id '-3'"),
    ("-1 1 2\n", "0 1\n", "train.txt", 1, "negative id '-1'"),
    ("0 1 2\r\n1 3\r\n0 2\r\n", "0 1\n", "train.txt", 3, "user 0 already has a line (line 1)"),
    ("0 1 2\n1 3\n", "0 1\n1 4\n", "test.txt", 2, "test item 4 is outside the item range [0, 4)"),
    ("0 1 2\n1 1234567890123456789\n", "0 1\n", "train.txt", 2, "more than 18 digits"),
    ("0 1 2\n", "0 1\n1 0\n2 2 x3", "test.txt", 3, "non-integer token 'x3'"),
]


@pytest.mark.parametrize("train, test, bad_file, line, words", BAD)
def test_bad_input_names_file_and_line(tmp_path, train, test, bad_file, line, words):
    folder = write_pair(tmp_path / "bad", train, test)
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{folder / bad_file}, line {line}: ")
    assert words in message


@pytest.mark.parametrize("train, test, bad_file", [
    ("", "0 1\n", "train.txt"),
    ("0\n1\n\n", "0 1\n", "train.txt"),  # users but no items
    ("0 1\n", "\r\n \n", "test.txt"),
])
def test_empty_dataset_is_an_error(tmp_path, train, test, bad_file):
    folder = write_pair(tmp_path / "e", train, test)
    with pytest.raises(DataError, match="no interactions") as info:
        load_dataset(folder)
    assert str(folder / bad_file) in str(info.value)


def test_missing_files(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "train.txt").write_text("0 1\n")
    with pytest.raises(DataFileNotFoundError) as info:
        load_dataset(folder)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert str(folder / "test.txt") in str(info.value)
    assert str(folder / "train.txt") not in str(info.value)
    with pytest.raises(DataFileNotFoundError, match="not a known dataset"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataFileNotFoundError, match=r"test.txt: no such file"):
        data.read_split_files(folder / "train.txt", folder / "test.txt", "x")


# ---------------------------------------------------------------------------------------------
# where the files come from


def test_named_dataset_source_order(tmp_path, monkeypatch):
    arg = write_pair(tmp_path / "arg" / "gowalla", "0 1\n", "0 0\n")
    write_pair(tmp_path / "env" / "gowalla", "0 1 2\n", "0 0\n")
    flat = write_pair(tmp_path / "flat", "0 1 2 3\n", "0 0\n")
    monkeypatch.setenv("MMLREPRO_DATA_DIR", str(tmp_path / "env"))
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="train.txt, .*test.txt differ from the public gowalla files"):
        assert load_dataset("gowalla", data_dir=arg.parent, cache_dir=cache).n_items == 2
    with pytest.warns(UserWarning):
        assert load_dataset("gowalla", cache_dir=cache).n_items == 3  # env
    with pytest.warns(UserWarning):
        assert load_dataset("gowalla", data_dir=flat, cache_dir=cache).n_items == 4  # flat dir
    assert not cache.exists()
    monkeypatch.delenv("MMLREPRO_DATA_DIR")
    with pytest.raises(DataFileNotFoundError) as info:
        load_dataset("yelp2018", data_dir=tmp_path / "arg", cache_dir=cache, download=False)
    for place in (tmp_path / "arg" / "yelp2018", tmp_path / "arg", cache / "yelp2018"):
        assert str(place) in str(info.value)


def test_cache_hit_needs_matching_checksums(tmp_path, monkeypatch):
    folder = write_pair(tmp_path / "cache" / "yelp2018", "0 1 2\n", "0 0\n")
    sums = {f"yelp2018/{s}.txt": data.sha256_file(folder / f"{s}.txt") for s in ("train", "test")}
    monkeypatch.setattr(sources, "SHA256", sums)
    monkeypatch.delenv("MMLREPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("MMLREPRO_CACHE_DIR", str(tmp_path / "cache"))
    assert load_dataset("yelp2018", download=False).n_items == 3
    (folder / "test.txt").write_text("0 1\n")  # a corrupted cache file is not used
    with pytest.raises(DataFileNotFoundError):
        load_dataset("yelp2018", download=False)


# ---------------------------------------------------------------------------------------------
# download against a local HTTP server


class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (body, declared length or None); set per server below

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, length = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)  # then the handler returns and the connection closes

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server; ``serve(routes)`` sets what it serves and returns its base URL."""
    handler = type("H", (Handler,), {"routes": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def serve(routes):
        handler.routes = routes
        return f"http://127.0.0.1:{httpd.server_address[1]}/Data"

    yield serve
    httpd.shutdown()
    httpd.server_close()


TRAIN, TEST = b"0 0 1\n1 2\n2 1 3\n", b"0 2\n1 3\n"


@pytest.fixture
def sums(monkeypatch):
    table = {"gowalla/train.txt": hashlib.sha256(TRAIN).hexdigest(),
             "gowalla/test.txt": hashlib.sha256(TEST).hexdigest()}
    monkeypatch.setattr(sources, "SHA256", table)
    monkeypatch.delenv("MMLREPRO_DATA_DIR", raising=False)
    return table


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_download_good_file_is_cached(tmp_path, server, sums, monkeypatch):
    url = server({"/Data/gowalla/train.txt": (TRAIN, None), "/Data/gowalla/test.txt": (TEST, None)})
    ds = load_dataset("gowalla", cache_dir=tmp_path, base_url=url)
    assert rows(*ds.csr("train")) == [[0, 1], [2], [1, 3]]
    assert rows(*ds.csr("test")) == [[2], [3], []]
    assert all_files(tmp_path) == ["gowalla/test.txt", "gowalla/train.txt"]
    assert (tmp_path / "gowalla" / "train.txt").read_bytes() == TRAIN
    server({})  # the server now has nothing: the cache answers
    assert load_dataset("gowalla", cache_dir=tmp_path, base_url=url, download=False).n_items == 4
    # the base URL can also come from the environment
    server({"/Data/gowalla/train.txt": (TRAIN, None), "/Data/gowalla/test.txt": (TEST, None)})
    monkeypatch.setenv("MMLREPRO_DATA_URL", url)
    assert load_dataset("gowalla", cache_dir=tmp_path / "other").n_users == 3


def test_download_wrong_checksum_leaves_cache_clean(tmp_path, server, sums):
    url = server({"/Data/gowalla/train.txt": (TRAIN + b"3 0\n", None),
                  "/Data/gowalla/test.txt": (TEST, None)})
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        load_dataset("gowalla", cache_dir=tmp_path, base_url=url)
    assert f"{url}/gowalla/train.txt" in str(info.value)
    assert all_files(tmp_path) == []


def test_download_dropped_connection_leaves_cache_clean(tmp_path, server, sums):
    url = server({"/Data/gowalla/train.txt": (TRAIN[:7], len(TRAIN)),
                  "/Data/gowalla/test.txt": (TEST, None)})
    with pytest.raises(DataError, match="gowalla/train.txt: connection closed after 7 of 16 bytes"):
        load_dataset("gowalla", cache_dir=tmp_path, base_url=url)
    assert all_files(tmp_path) == []


def test_download_http_error_leaves_cache_clean(tmp_path, server, sums):
    url = server({"/Data/gowalla/train.txt": (TRAIN, None)})  # test.txt: 404
    with pytest.raises(DataError, match="404"):
        load_dataset("gowalla", cache_dir=tmp_path, base_url=url)
    assert all_files(tmp_path) == ["gowalla/train.txt"]  # the good file stays, verified


def test_corrupt_cache_file_is_downloaded_again(tmp_path, server, sums):
    write_pair(tmp_path / "gowalla", TRAIN, b"0 1\n")  # test.txt corrupted
    url = server({"/Data/gowalla/test.txt": (TEST, None)})  # only the bad one is fetched
    ds = load_dataset("gowalla", cache_dir=tmp_path, base_url=url)
    assert rows(*ds.csr("test")) == [[2], [3], []]
    assert all_files(tmp_path) == ["gowalla/test.txt", "gowalla/train.txt"]


# ---------------------------------------------------------------------------------------------
# Dataset helpers


def test_dataset_helpers_hand_values():
    ds = tiny()
    assert ds.train_users().tolist() == [0, 0, 0, 1, 1, 2]
    assert ds.train_items() is ds.train_indices
    assert ds.history_lengths().tolist() == [3, 2, 1, 0]
    assert ds.item_popularity().tolist() == [1, 1, 1, 1, 1, 1]
    assert ds.stats() == dict(users=4, items=6, interactions=10, train=6, test=4,
                              density=10 / 24)
    assert ds.csr("test")[1].tolist() == [4, 5, 0, 1]
    with pytest.raises(ValueError, match="split"):
        ds.csr("valid")
    assert repr(ds) == "Dataset('tiny', users=4, items=6, train=6, test=4)"
    with pytest.raises(ValueError, match="CSR"):
        Dataset("x", 3, 6, np.array([0, 1, 2]), np.array([0, 1]), np.array([0, 0, 0, 0]),
                np.array([], np.int64))
    with pytest.raises(ValueError, match="outside"):
        Dataset("x", 1, 2, np.array([0, 1]), np.array([2]), np.array([0, 0]), np.array([]))


def test_subsample_users(synthetic_dataset):
    ds = synthetic_dataset
    sub = ds.subsample_users(50, seed=1)
    assert (sub.n_users, sub.n_items, sub.name) == (50, ds.n_items, "synthetic-sub50")
    assert (np.diff(sub.test_indptr) > 0).all()
    # each new user is an original user (distinct, original order), with both rows intact
    original = {(tuple(a), tuple(b)): u for u, (a, b) in
                enumerate(zip(rows(*ds.csr("train")), rows(*ds.csr("test")), strict=True))}
    picked = [original[(tuple(a), tuple(b))] for a, b in
              zip(rows(*sub.csr("train")), rows(*sub.csr("test")), strict=True)]
    assert picked == sorted(set(picked)) and len(picked) == 50
    again = ds.subsample_users(50, seed=1)
    assert np.array_equal(again.train_indices, sub.train_indices)
    assert not np.array_equal(ds.subsample_users(50, seed=2).train_indices, sub.train_indices)
    tiny_sub = tiny().subsample_users(3, seed=0)  # user 1 has no test item: never kept
    assert rows(*tiny_sub.csr("train")) == [[0, 1, 2], [5], []]
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        tiny().subsample_users(4, seed=0)


def test_holdout_split(synthetic_dataset):
    ds = synthetic_dataset
    fit, val = ds.holdout(0.25, seed=7)
    assert (fit.name, val.name) == ("synthetic-fit", "synthetic-validation")
    assert np.array_equal(fit.train_indptr, val.train_indptr)
    assert np.array_equal(fit.train_indices, val.train_indices)
    assert np.array_equal(fit.test_indices, ds.test_indices)
    lengths = ds.history_lengths()
    expected_k = np.minimum(np.maximum(np.floor(0.25 * lengths + 0.5), 1), lengths - 1)
    assert np.array_equal(np.diff(val.test_indptr), expected_k)
    for full, kept, held in zip(rows(*ds.csr("train")), rows(*fit.csr("train")),
                                rows(*val.csr("test")), strict=True):
        assert sorted(kept + held) == sorted(full)
        assert kept == [i for i in full if i not in held]  # file order kept
    assert np.array_equal(ds.holdout(0.25, seed=7)[1].test_indices, val.test_indices)
    assert not np.array_equal(ds.holdout(0.25, seed=8)[1].test_indices, val.test_indices)


def test_holdout_small_histories():
    fit, val = tiny().holdout(0.5, seed=0)  # lengths 3, 2, 1, 0 -> k = 2, 1, 0, 0
    assert np.diff(val.test_indptr).tolist() == [2, 1, 0, 0]
    assert np.diff(fit.train_indptr).tolist() == [1, 1, 1, 0]
    assert rows(*fit.csr("train"))[2] == [5]
    assert rows(*fit.csr("test")) == rows(*tiny().csr("test"))
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            tiny().holdout(bad)


# ---------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_shapes_and_guarantees(synthetic_dataset):
    ds = synthetic_dataset
    assert (ds.name, ds.n_users, ds.n_items) == ("synthetic", 500, 800)
    assert ds.train_indices.dtype == np.int64
    assert np.diff(ds.train_indptr).min() >= 2
    assert np.diff(ds.test_indptr).min() >= 1
    train, test = rows(*ds.csr("train")), rows(*ds.csr("test"))
    for a, b in zip(train, test, strict=True):
        assert len(set(a)) == len(a) and len(set(b)) == len(b) and not set(a) & set(b)
    # about avg_items per user, about test_fraction of them in test
    total = len(ds.train_indices) + len(ds.test_indices)
    assert 18 < total / ds.n_users < 22
    assert 0.17 < len(ds.test_indices) / total < 0.23
    # popularity skew: the 10% most popular items hold far more than 10% of the interactions
    pop = np.sort(ds.item_popularity())[::-1]
    assert pop[:80].sum() / pop.sum() > 0.3


def test_synthetic_deterministic():
    a, b, c = synthetic(100, 200, seed=5), synthetic(100, 200, seed=5), synthetic(100, 200, seed=6)
    for field in ("train_indptr", "train_indices", "test_indptr", "test_indices"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.train_indices, c.train_indices)
    flat = synthetic(100, 200, popularity_skew=0.0, seed=5)
    assert np.sort(flat.item_popularity())[-20:].sum() < np.sort(a.item_popularity())[-20:].sum()
    with pytest.raises(ValueError):
        synthetic(test_fraction=1.0)


def recall_at_20(scores: np.ndarray, ds: Dataset) -> float:
    scores = scores.astype(float).copy()
    scores[ds.train_users(), ds.train_items()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :20]
    test = rows(*ds.csr("test"))
    return float(np.mean([len(set(t) & set(top[u])) / len(t) for u, t in enumerate(test)]))


def test_synthetic_structure_is_learnable(synthetic_dataset):
    """A rank-8 SVD of the train matrix beats popularity and random ranking on test."""
    ds = synthetic_dataset
    x = np.zeros((ds.n_users, ds.n_items))
    x[ds.train_users(), ds.train_items()] = 1.0
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    svd = recall_at_20((u[:, :8] * s[:8]) @ vt[:8], ds)
    popularity = recall_at_20(np.tile(ds.item_popularity(), (ds.n_users, 1)), ds)
    random = recall_at_20(np.random.default_rng(0).random(x.shape), ds)
    assert random < 0.05
    assert svd > popularity > 4 * random
    assert svd > 0.3
