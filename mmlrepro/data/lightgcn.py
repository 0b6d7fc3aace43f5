"""The LightGCN files: parsing ``train.txt`` / ``test.txt`` into a :class:`Dataset` (SPEC §2).

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
Anything else is a one-line :class:`~mmlrepro.data.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlrepro.data.dataset import Dataset, csr_from_rows
from mmlrepro.data.errors import DataError, read_error

MAX_ID = 2**31  # every user and item id must be < MAX_ID (int32 range) [assumed]
_DENSE_IDS = 2**20  # an id range up to this size is always accepted ...
_GAP_FACTOR = 16  # ... above it, it may be at most this many times the distinct ids used


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
        raise read_error(path, error) from None
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
    csr = [csr_from_rows(np.repeat(p.users, p.counts), p.items, n_users) for p in (train, test)]
    return Dataset(name, n_users, n_items, *csr[0], *csr[1])
