"""Figures out of the process: :func:`save_figure` writes PNG/PDF/SVG files with the profile in
their name, :func:`figure_png` gives the PNG bytes a notebook shows; neither writes a date, so
the same figure always gives the same bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# No date in any saved file (matplotlib's PNG has none; PDF and SVG would carry the time of
# saving), so the same figure always gives the same bytes.
_METADATA: dict[str, dict] = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def save_figure(fig: Figure, name: str, profile: str, figures_dir: str | Path = "figures",
                dpi: int = 150, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>_<profile>.<format>`` for each of ``formats``
    (png, pdf, svg; the folder is created) and return the paths. ``name`` and ``profile`` must
    be plain file-name parts. The files carry no creation date: saving the same figure twice
    writes the same bytes, so re-running a notebook leaves unchanged figures unchanged."""
    for what, part in (("name", name), ("profile", profile)):
        if not isinstance(part, str) or not _NAME_RE.match(part):
            raise ValueError(f"save_figure: {what} must be a plain file-name part "
                             f"(letters, digits, _ . -), got {part!r}")
    unknown = [f for f in formats if f not in _METADATA]
    if unknown:
        raise ValueError(f"save_figure: formats must be among {list(_METADATA)}, got {unknown}")
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}_{profile}.{ext}" for ext in formats]
    with mpl.rc_context({"svg.hashsalt": "mmlrepro"}):  # SVG ids: fixed, not random
        for path, ext in zip(paths, formats, strict=True):
            fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white",
                        metadata=_METADATA[ext])
    return paths


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (tight box, white background, no date): what a notebook shows."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white",
                metadata=_METADATA["png"])
    return buf.getvalue()

