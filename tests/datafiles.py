"""Helpers the data tests share: writing a small dataset in the LightGCN format (SPEC §2)."""

from pathlib import Path


def write_pair(folder: Path, train: str | bytes, test: str | bytes) -> Path:
    """Writes ``train.txt`` and ``test.txt`` (text, or raw bytes for corrupt files) into
    ``folder``, creating it, and returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("test", test)):
        (folder / f"{split}.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    return folder
