"""The datasets figure (SPEC §2, notebook 02): item popularity and users' history lengths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mmlrepro.plots.style import (
    DATASET_COLORS,
    _new_figure,
    _styled,
    dataset_order,
)


@_styled
def plot_distributions(datasets) -> Figure:
    """Item popularity (train interactions per item, sorted, against rank, log-log: the long
    tail) and the distribution of users' train-history lengths, one line per dataset.

    ``datasets``: a :class:`mmlrepro.data.Dataset` or a sequence of them, drawn in the tables'
    order (:func:`dataset_order`).
    """
    if not isinstance(datasets, Sequence):
        datasets = [datasets]
    if len(datasets) == 0:
        raise ValueError("plot_distributions: no dataset given")
    order = dataset_order([ds.name for ds in datasets])
    datasets = sorted(datasets, key=lambda ds: order.index(ds.name))
    fig = _new_figure(10.0, 3.8)
    axes = fig.subplots(1, 2)
    colors = [DATASET_COLORS[i % len(DATASET_COLORS)] for i in range(len(datasets))]
    for ds, color in zip(datasets, colors, strict=True):
        pop = np.sort(ds.item_popularity())[::-1]
        pop = pop[pop > 0]
        axes[0].plot(np.arange(1, len(pop) + 1), pop, color=color, lw=2, label=ds.name)
        lengths = ds.history_lengths()
        lengths = lengths[lengths > 0]
        bins = np.unique(np.round(np.logspace(0, np.log10(lengths.max() + 1), 40)))
        counts, edges = np.histogram(lengths, bins=bins)
        share = counts / counts.sum() / np.diff(edges)  # density per unit length
        axes[1].stairs(share, edges, color=color, lw=2, label=ds.name)
        axes[1].axvline(np.median(lengths), color=color, ls=":", lw=1.2)
    axes[0].set(xscale="log", yscale="log", xlabel="item rank (by train interactions)",
                ylabel="train interactions", title="Item popularity: the long tail")
    axes[1].set(xscale="log", yscale="log", xlabel="train items per user (dotted: median)",
                ylabel="share of users per unit length", title="History lengths")
    axes[0].legend()
    axes[1].legend()
    return fig
