"""The errors of the data layer (SPEC §2): one line, naming the file and, where there is one, the line.

:class:`DataError` (a ``ValueError``) covers a non-integer token, a non-ASCII byte, a negative id,
an id out of range, ids with a huge gap, a user with two lines, a test item never seen in train, a
file with no interactions, a file that cannot be read (permission, a folder in its place), a
``data_dir`` or ``$MMLREPRO_DATA_DIR`` that is not a folder, a cache folder that is a file, a
download that fails or whose SHA-256 differs from :data:`mmlrepro.data.sources.SHA256` (nothing is
left in the cache), and a dataset too small for the ranking cutoffs. A missing file or folder is a
:class:`DataFileNotFoundError`, also a ``FileNotFoundError``, saying where it looked.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file is missing, malformed, inconsistent, or failed to download."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file could not be found; the message lists every place that was searched."""


def read_error(path: Path, error: OSError) -> DataError:
    """The one-line :class:`DataError` for a file that could not be opened or read."""
    if isinstance(error, FileNotFoundError):
        return DataFileNotFoundError(f"{path}: no such file")
    if isinstance(error, IsADirectoryError) or path.is_dir():
        return DataError(f"{path}: is a folder, not a data file")
    return DataError(f"{path}: cannot be read ({error.strerror or type(error).__name__})")
