"""Figures (mmlrepro.plots) and the margin-geometry helpers they draw (mmlrepro.geometry)."""

import matplotlib

matplotlib.use("Agg")

import time

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from mmlrepro import geometry, plots
from mmlrepro.losses import get_loss

GOWALLA = dict(margins=(0.7, 0.8, 0.9), weights=(0.10, 0.15, 0.75), neg_weight=700.0)


def _autograd_weights(loss, s_neg: np.ndarray, s_pos: float, **hp) -> np.ndarray:
    """N·∂L/∂s⁻_j of a registered loss, by autograd (the naive reference)."""
    neg = torch.tensor(s_neg, dtype=torch.float64)[None, :].requires_grad_(True)
    pos = torch.tensor([s_pos], dtype=torch.float64)
    get_loss(loss, **hp)(pos, neg).backward()
    return neg.grad[0].numpy() * len(s_neg)


# --- geometry ------------------------------------------------------------------------------


S = np.array([-0.95, -0.2, 0.05, 0.65, 0.72, 0.79, 0.81, 0.88, 0.93, 0.99])


def test_negative_weights_mml_hand_worked():
    w = geometry.negative_weights("mml", S, **GOWALLA)
    # 700·(0), 700·0.10 above 0.7, 700·0.25 above 0.8, 700·1.0 above 0.9
    expected = [0, 0, 0, 0, 70, 70, 175, 175, 700, 700]
    np.testing.assert_allclose(w, expected)
    np.testing.assert_allclose(w, _autograd_weights("mml", S, 0.5, pos_weight=1.0, **GOWALLA))


def test_negative_weights_match_each_loss_by_autograd():
    ccl = geometry.negative_weights("ccl", S, **GOWALLA)  # top margin 0.9, w = neg_weight
    np.testing.assert_allclose(ccl, [0] * 8 + [700, 700])
    np.testing.assert_allclose(ccl, _autograd_weights("ccl", S, 0.5, margin=0.9, neg_weight=700.0))
    trip = geometry.negative_weights("triplet", S, **GOWALLA, s_pos=0.8)  # s⁻ > 0.8 − 0.9
    np.testing.assert_allclose(trip, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(trip, _autograd_weights("hinge", S, 0.8, margin=0.9))
    con = geometry.negative_weights("contrastive", S, **GOWALLA)
    np.testing.assert_allclose(con, np.full(len(S), 700.0))


def test_equivalent_mml_and_errors():
    assert geometry.equivalent_mml("CCL", (0.5, 0.9), (1, 2), 150) == ((0.9,), (1.0,), 150.0)
    assert geometry.equivalent_mml("triplet", (0.9,), (1,), 150, s_pos=-0.5) == ((-1.0,), (1.0,), 1.0)
    assert geometry.equivalent_mml("contrastive", (0.9,), (1,), 5) == ((-1.0,), (1.0,), 5.0)
    with pytest.raises(ValueError, match="unknown loss 'bpr'"):
        geometry.equivalent_mml("bpr", (0.9,), (1,), 1)
    with pytest.raises(ValueError, match="one weight per margin"):
        geometry.equivalent_mml("mml", (0.8, 0.9), (1,), 1)


def test_paper_setting_gives_each_loss_its_own_weight():
    # SPEC §8: CCL w = 150 at N = 100 (not MML's w_neg), MML w_neg 700 Gowalla / 400 Yelp2018
    assert geometry.paper_setting("ccl") == {"margins": (0.9,), "weights": (1.0,),
                                             "neg_weight": 150.0}
    assert geometry.paper_setting("mml") == GOWALLA
    yelp = geometry.paper_setting("mml", "yelp2018")
    assert yelp["margins"] == (0.6, 0.7, 0.8, 0.9) and yelp["neg_weight"] == 400.0
    assert geometry.paper_setting("triplet")["margins"] == (0.9,)
    # the shared colour scale tops at the largest weight any loss gives: MML's w_neg · Σ w_k
    assert geometry.shared_weight_max() == pytest.approx(700.0)
    assert geometry.shared_weight_max(dataset="yelp2018") == pytest.approx(400.0)
    assert geometry.shared_weight_max(("ccl", "triplet")) == pytest.approx(150.0)


def test_explorer_values_reset_to_each_loss_and_settings_read_only_its_sliders():
    ccl = geometry.explorer_values("ccl")
    assert ccl["w_neg"] == 150.0 and ccl["m3"] == 0.9
    mml = geometry.explorer_values("mml")
    assert (mml["m1"], mml["w3"], mml["w_neg"]) == (0.7, 0.75, 700.0)
    assert set(ccl) == set(geometry.EXPLORER_SLIDERS)
    moved = {**mml, "m1": 0.95, "w1": 0.5, "w_neg": 300.0, "s_pos": 0.2}
    # CCL reads m3 and w_neg only; the hinge m3 and s⁺ (weight 1); MML all margins, merged
    assert geometry.explorer_settings("ccl", moved) == ((0.9,), (1.0,), 300.0, geometry.S_POS)
    assert geometry.explorer_settings("triplet", moved) == ((0.9,), (1.0,), 1.0, 0.2)
    assert geometry.explorer_settings("contrastive", moved)[:3] == ((-1.0,), (1.0,), 300.0)
    assert geometry.explorer_settings("mml", moved)[:3] == ((0.8, 0.9, 0.95),
                                                            (0.15, 0.75, 0.5), 300.0)
    with pytest.raises(ValueError, match="3 margin sliders"):
        geometry.explorer_values("mml", "yelp2018")


def test_merge_margins_sorts_and_merges():
    assert geometry.merge_margins((0.9, 0.7, 0.9), (0.5, 0.1, 0.25)) == ((0.7, 0.9), (0.1, 0.75))


def test_negative_cloud_deterministic_and_shaped():
    a1, r1 = geometry.negative_cloud(50, seed=3)
    a2, r2 = geometry.negative_cloud(50, seed=3)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(r1, r2)
    assert a1.shape == r1.shape == (50,)
    assert np.all((r1 > 0.85) & (r1 <= 1.0)) and np.all(np.abs(a1) <= np.pi)
    with pytest.raises(ValueError, match="n >= 1"):
        geometry.negative_cloud(0)


class _FixedModel(torch.nn.Module):
    """Scores s(u, i) = cos of fixed 2-D vectors: user u at angle 0, item i at angle θ_i."""

    def __init__(self, item_angles):
        super().__init__()
        self.items = torch.nn.Parameter(torch.tensor(
            np.stack([np.cos(item_angles), np.sin(item_angles)], 1), dtype=torch.float32))

    def user_vectors(self, users):
        return torch.tensor([[1.0, 0.0]]).expand(len(users), 2)

    def item_vectors(self, items=None):
        return self.items if items is None else self.items[items]


def test_active_share_on_a_fixed_model(synthetic_dataset):
    # items with cos 0.95 (1 of them), 0.75 (1), and 0.0 (the rest): a uniform negative is
    # above 0.9 with probability 1/n_items, above 0.7 with 2/n_items (the exact expectations)
    n_items = synthetic_dataset.n_items
    angles = np.full(n_items, np.pi / 2)
    angles[0], angles[1] = np.arccos(0.95), np.arccos(0.75)
    model = _FixedModel(angles)
    df = geometry.active_share(model, synthetic_dataset, n_values=(10, 400), n_users=50, seed=1,
                               chunk=16)
    assert list(df["loss"]) == list(geometry.ACTIVE_SHARE_LOSSES) * 2
    assert list(df["n_negatives"]) == [10, 10, 400, 400]
    ccl, mml = df.iloc[2], df.iloc[3]
    assert ccl.share_active == pytest.approx(1 / n_items)
    assert mml.share_active == pytest.approx(2 / n_items)
    assert mml.active_per_row == pytest.approx(400 * 2 / n_items)
    assert mml.rows_with_active == pytest.approx(1 - (1 - 2 / n_items) ** 400)
    assert df.iloc[1].rows_with_active == pytest.approx(1 - (1 - 2 / n_items) ** 10)
    # mean weight: 1.0 for the 0.95 item, 0.10 for the 0.75 item
    assert mml.mean_weight == pytest.approx(1.1 / n_items)
    assert ccl.mean_weight == pytest.approx(1 / n_items)


def test_train_briefly_learns_and_checkpoints(synthetic_dataset):
    seen = []
    model = geometry.train_briefly(synthetic_dataset, steps=40, batch_size=64, n_negatives=10,
                                   dim=16, seed=0, checkpoints=(0, 40),
                                   on_checkpoint=lambda step, m: seen.append(step))
    assert seen == [0, 40] and not model.training
    with torch.no_grad():
        users = torch.from_numpy(synthetic_dataset.train_users()[:500])
        items = torch.from_numpy(synthetic_dataset.train_items()[:500])
        pos = (model.user_vectors(users) * model.item_vectors(items)).sum(-1)
        rand = (model.user_vectors(users) * model.item_vectors(torch.randint(800, (500,)))).sum(-1)
    assert pos.mean() > rand.mean() + 0.1  # the positives are pulled towards their users
    df, _ = geometry.active_share_during_training(synthetic_dataset, (0, 5), n_values=(10,),
                                                  n_users=32, dim=8, batch_size=32)
    assert list(df["step"]) == [0, 0, 5, 5] and list(df["n_negatives"]) == [10] * 4
    with pytest.raises(ValueError, match="checkpoints"):
        geometry.train_briefly(synthetic_dataset, steps=5, checkpoints=(9,))


# --- figures -------------------------------------------------------------------------------


def test_margin_geometry_figure():
    fig = plots.plot_margin_geometry("mml", **GOWALLA, n_negatives=40, seed=0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the picture and its colour bar
    n_pushed = int((geometry.negative_weights(
        "mml", np.cos(geometry.negative_cloud(40, 0)[0]), **GOWALLA) > 0).sum())
    assert ax.get_title() == f"MML (w_neg 700): {n_pushed} of 40 negatives pushed"
    # pushed + not pushed negatives + the positive star: three scatter collections
    sizes = sorted(len(c.get_offsets()) for c in ax.collections)
    assert sizes == sorted([n_pushed, 40 - n_pushed, 1])


def test_penalty_curve_figure_lines_and_levels():
    fig = plots.plot_penalty_curve(**GOWALLA, n_negatives=100)
    pen_ax, slope_ax = fig.axes
    assert len(pen_ax.lines) == 1 + 3 and len(slope_ax.lines) == 1 + 3  # curve + 3 margins
    x, y = slope_ax.lines[0].get_data()
    assert y[np.searchsorted(x, 0.85)] == pytest.approx(1.75)
    assert [t.get_text() for t in slope_ax.texts] == ["0.7", "1.75", "7"]


def _pushed(ax):
    """The scatter of pushed negatives of a margin-geometry panel (the one with a colour map)."""
    return [c for c in ax.collections if c.get_array() is not None and c.get_cmap() is
            plots.WEIGHT_CMAP][0]


def test_explorer_and_gallery():
    fig = plots.plot_margin_explorer("triplet", **GOWALLA, n_negatives=30)
    assert len(fig.axes) == 4  # picture, colour bar, penalty, slope
    fig = plots.plot_margin_gallery(n_negatives=30)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == [
        "Contrastive (w 1)", "CCL (w 150)", "Triplet / hinge", "MML (w_neg 700)"]
    assert len(fig.axes) == 4 + 1  # four panels, one shared colour bar
    # each loss at its own paper weight, all on one colour scale 0-700
    assert set(_pushed(panels[1]).get_array()) == {150.0}
    assert max(_pushed(panels[3]).get_array()) == 700.0
    assert {(_pushed(ax).norm.vmin, _pushed(ax).norm.vmax) for ax in panels} == {(0.0, 700.0)}


def test_explorer_figure_keeps_one_scale_so_w_neg_shows():
    low = plots.explorer_figure("mml", values={**geometry.explorer_values("mml"), "w_neg": 200})
    default = plots.explorer_figure("mml")
    for fig in (low, default):
        assert _pushed(fig.axes[0]).norm.vmax == 700.0
        assert fig.axes[-1].get_ylim()[1] == pytest.approx(7 * 1.2)  # slope axis: 700 / N
    assert max(_pushed(low.axes[0]).get_array()) == pytest.approx(200.0)
    ccl = plots.explorer_figure("ccl")
    assert ccl.axes[0].get_title().startswith("CCL (w 150)")
    assert ccl.axes[-1].lines[0].get_color() == plots.loss_color("ccl")


def test_margin_explorer_widget_resets_disables_and_redraws():
    pytest.importorskip("ipywidgets")
    ex = plots.MarginExplorer(n_negatives=30)
    assert ex.draws == 1 and ex.values() == geometry.explorer_values("mml")
    assert not any(s.disabled for name, s in ex.sliders.items() if name != "s_pos")
    ex.sliders["w_neg"].value = 300.0
    assert ex.draws == 2 and ex.figure.axes[0].get_title().startswith("MML (w_neg 300)")
    ex.sliders["m1"].value = 0.5
    ex.loss.value = "ccl"  # resets every slider to CCL's paper setting, one redraw
    assert ex.draws == 4 and ex.values() == geometry.explorer_values("ccl")
    assert ex.sliders["w_neg"].value == 150.0 and ex.sliders["m1"].value == 0.7
    assert {n for n, s in ex.sliders.items() if not s.disabled} == {"m3", "w_neg"}
    assert ex.figure.axes[0].get_title().startswith("CCL (w 150)")
    ex.loss.value = "triplet"
    assert {n for n, s in ex.sliders.items() if not s.disabled} == {"m3", "s_pos"}
    ex.loss.value = "mml"
    assert ex.values()["w_neg"] == 700.0 and ex.draws == 6
    assert plots.figure_png(ex.figure)[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("[margin explorer")  # what an unrun notebook shows


def test_active_share_figure():
    df = pd.DataFrame({"loss": ["CCL (m = 0.9)", "MML (m = 0.7)"] * 3,
                       "n_negatives": [10, 10, 100, 100, 800, 800],
                       "share_active": [0.01, 0.03] * 3,
                       "active_per_row": [0.1, 0.3, 1, 3, 8, 24],
                       "rows_with_active": [0.1, 0.3, 0.6, 0.9, 1.0, 1.0]})
    fig = plots.plot_active_share(df)
    assert len(fig.axes) == 2 and all(len(ax.lines) >= 2 for ax in fig.axes)
    assert [ax.get_ylabel() for ax in fig.axes] == ["negatives with a gradient, per row",
                                                    "share of rows"]
    assert fig.axes[0].lines[1].get_color() == plots.loss_color("MML")
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [0.3, 3, 24])  # MML per row
    assert fig.axes[0].get_yscale() == "log"
    fig = plots.plot_active_share(df.assign(step=df["n_negatives"]), x="step")
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.01] * 3)  # CCL share
    with pytest.raises(ValueError, match="rows_with_active"):
        plots.plot_active_share(df.drop(columns="rows_with_active"))


def test_distributions_figure(synthetic_dataset):
    from mmlrepro.data import synthetic

    other = synthetic(n_users=100, n_items=200, seed=1, name="other")
    fig = plots.plot_distributions([synthetic_dataset, other])
    pop_ax, hist_ax = fig.axes
    assert len(pop_ax.lines) == 2
    x, y = pop_ax.lines[0].get_data()  # rank-frequency: sorted decreasing, sums to train size
    assert np.all(np.diff(y) <= 0) and y.sum() == len(synthetic_dataset.train_indices)
    assert pop_ax.get_xscale() == "log" and pop_ax.get_yscale() == "log"
    assert [t.get_text() for t in pop_ax.get_legend().get_texts()] == ["synthetic", "other"]


def _sweep_frame():
    rows = []
    for ds in ("gowalla", "yelp2018"):
        for loss in ("CCL", "MML", "BSL"):
            for n in (10, 100, 800):
                for seed in (1, 2):
                    rows.append({"dataset": ds, "loss": loss, "n_negatives": n, "seed": seed,
                                 "recall@20": 0.1 + 0.01 * seed + n / 1e4})
    return pd.DataFrame(rows)


def test_metric_vs_negatives():
    fig = plots.plot_metric_vs_negatives(_sweep_frame().assign(profile="paper"), "recall@20")
    assert [ax.get_title() for ax in fig.axes] == ["yelp2018", "gowalla"]  # the tables' order
    assert fig.get_suptitle() == "recall@20 against the number of negatives [paper profile · 2 seeds]"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["CCL", "MML", "BSL"]
    assert all(ax.get_legend() is None for ax in fig.axes)  # one legend, outside the panels
    ax = fig.axes[0]
    lines = [line for line in ax.lines if len(line.get_xdata())]  # not the legend handles
    assert len(lines) == 3 and ax.get_xscale() == "log"
    x, y = lines[0].get_data()  # CCL, mean over the two seeds
    np.testing.assert_allclose(x, [10, 100, 800])
    np.testing.assert_allclose(y, [0.115 + 0.001, 0.115 + 0.01, 0.115 + 0.08])
    with pytest.raises(ValueError, match="ndcg@20"):
        plots.plot_metric_vs_negatives(_sweep_frame(), "ndcg@20")


def test_reproduced_vs_reported():
    df = pd.DataFrame({"label": ["MF-CCL", "MF-MML"] * 4, "loss": ["ccl", "mml"] * 4,
                       "seed": 2019,
                       "dataset": ["gowalla"] * 4 + ["yelp2018"] * 4,
                       "metric": ["recall@20", "recall@20", "ndcg@20", "ndcg@20"] * 2,
                       "reproduced": [0.17, 0.18, 0.14, 0.143, 0.067, 0.070, 0.055, 0.058],
                       "reported": [0.1783, 0.1816, 0.1426, 0.1435, 0.0673, 0.0702, 0.0551, 0.0580]})
    fig = plots.plot_reproduced_vs_reported(df.assign(profile="paper"))
    assert len(fig.axes) == 4  # 2 metrics × 2 datasets
    assert [ax.get_title() for ax in fig.axes] == ["yelp2018 · recall@20", "gowalla · recall@20",
                                                   "yelp2018 · ndcg@20", "gowalla · ndcg@20"]
    assert fig.get_suptitle() == "Reproduced vs reported [paper profile · 1 seed]"
    ax = fig.axes[1]  # recall@20 · gowalla: a dot plot of the relative difference, ±5 % band
    band = ax.patches[0]
    assert (band.get_x(), band.get_x() + band.get_width()) == pytest.approx((-5, 5))
    means = ax.collections[-1]
    np.testing.assert_allclose(means.get_offsets()[:, 0], [100 * (0.17 / 0.1783 - 1), 100 * (0.18 / 0.1816 - 1)])
    assert [tuple(c[:3]) for c in means.get_facecolor()] == [plots.loss_color("CCL"), plots.loss_color("MML")]
    assert "quick profile · pipeline run" in plots.plot_reproduced_vs_reported(
        df.assign(profile="quick")).get_suptitle()
    with pytest.raises(ValueError, match="no colour for loss 'MF-CCL'"):
        plots.plot_reproduced_vs_reported(df.drop(columns="loss"))


def test_heatmap_marks_best_cell_and_says_where_it_lies_on_the_grid():
    df = pd.DataFrame([{"lam": lam, "eps": eps, "recall@20": 0.1 + lam / 10 - eps / 100}
                       for lam in (0.9, 1.0, 1.1) for eps in (0.0, 0.5, 1.0)])
    fig = plots.plot_heatmap(df, "lam", "eps", "recall@20", names={"lam": "λ", "eps": "ε"},
                             caption="paper profile · 1 seed")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colour bar
    assert len(ax.texts) == 9 and ax.texts[0].get_text() == f"{0.1 + 0.09:.4f}"
    best = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)][0]
    assert best.get_xy() == (0, 2)  # eps = 0 (column 0), lam = 1.1 (row 2)
    assert ax.get_title() == ("recall@20 over λ × ε [paper profile · 1 seed]\nbest at λ = 1.1, ε = 0, "
                              "the edge of the λ grid (0.9–1.1), the edge of the ε grid (0–1)")
    inner = df.assign(**{"recall@20": lambda d: 0.2 - (d["lam"] - 1.0) ** 2 - (d["eps"] - 0.5) ** 2})
    assert plots.plot_heatmap(inner, "lam", "eps", "recall@20").axes[0].get_title().endswith(
        "best at lam = 1, eps = 0.5")


def test_learning_curves_mark_our_and_the_papers_early_stop():
    rows = [{"dataset": "gowalla", "loss_name": "MML", "seed": 2019, "epoch": e, "recall@20": 0.01 * e,
             "stop_epoch": 4, "paper_stop_epoch": 2, "profile": "paper"} for e in range(1, 7)]
    fig = plots.plot_learning_curves(pd.DataFrame(rows), "recall@20", style=None)
    ax = fig.axes[0]
    offsets = [np.asarray(c.get_offsets()).tolist() for c in ax.collections if len(c.get_offsets()) == 1]
    assert [[4.0, 0.04]] in offsets and [[2.0, 0.02]] in offsets
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-2:] == ["our early stop (SPEC §6 rule)", "the paper's early stop"]
    assert fig.get_suptitle() == "recall@20 per epoch [paper profile · 1 seed]"


def test_save_figure(tmp_path):
    fig = plots.plot_penalty_curve()
    paths = plots.save_figure(fig, "figure3_negatives", "quick", tmp_path / "figs")
    assert [p.name for p in paths] == ["figure3_negatives_quick.png", "figure3_negatives_quick.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ValueError, match="profile"):
        plots.save_figure(fig, "x", "../quick", tmp_path)
    with pytest.raises(ValueError, match="formats"):
        plots.save_figure(fig, "x", "quick", tmp_path, formats=("jpg",))


def test_save_figure_twice_gives_the_same_bytes(tmp_path):
    """No creation date in the files: a re-run notebook leaves an unchanged figure unchanged."""
    formats = ("png", "pdf", "svg")
    first = [p.read_bytes() for p in plots.save_figure(
        plots.plot_penalty_curve(), "f", "quick", tmp_path / "a", formats=formats)]
    time.sleep(1.1)  # a date, if written, would now differ (PDF dates are to the second)
    second = [p.read_bytes() for p in plots.save_figure(
        plots.plot_penalty_curve(), "f", "quick", tmp_path / "b", formats=formats)]
    assert first == second
    assert b"CreationDate" not in first[1] and b"<dc:date>" not in first[2]


# --- one palette -----------------------------------------------------------------------------


def _plottable_loss_names() -> list[str]:
    """Every loss name a figure function is given: registry and display names, the
    matched-weight variants, the margin-geometry kinds and the active-share families."""
    from mmlrepro.comparison import LOSS_NAMES
    from mmlrepro.losses import LOSSES

    return [*LOSSES, *LOSS_NAMES, *LOSS_NAMES.values(), "CCL (paper weight)",
            "CCL (matched weight)", *geometry.LOSS_KINDS, *geometry.LOSS_TITLES.values(),
            *(geometry.loss_family(label) for label in geometry.ACTIVE_SHARE_LOSSES)]


def test_every_plottable_loss_has_one_fixed_colour():
    from mmlrepro.comparison import LOSS_NAMES

    for name in _plottable_loss_names():
        assert plots.loss_color(name) in plots.LOSS_COLORS.values(), name
    for registry, display in LOSS_NAMES.items():  # lower-case and display names agree
        assert plots.loss_color(registry) == plots.loss_color(display), registry
        assert plots.loss_color(display.upper()) == plots.loss_color(display)
    assert plots.loss_color("CCL (paper weight)") == plots.loss_color("ccl")
    assert plots.loss_color("CCL (matched weight)") != plots.loss_color("ccl")
    assert plots.loss_color("triplet") == plots.loss_color("hinge")
    colors = [plots.loss_color(d) for d in LOSS_NAMES.values()] + [
        plots.loss_color("CCL (matched weight)"), plots.loss_color("contrastive")]
    assert len(set(colors)) == len(colors)  # different losses, different colours
    with pytest.raises(ValueError, match="no colour for loss 'CCL \\(matched w\\)'"):
        plots.loss_color("CCL (matched w)")


def _line_colors(fig) -> dict[str, tuple]:
    return {t.get_text(): mpl.colors.to_rgb(h.get_color())
            for h, t in zip(fig.legends[0].legend_handles, fig.legends[0].get_texts(),
                            strict=True) if hasattr(h, "get_color")}


def test_figures_colour_a_loss_the_same_under_any_name():
    lower = _sweep_frame().assign(loss=lambda d: d["loss"].str.lower())
    by_display = _line_colors(plots.plot_metric_vs_negatives(_sweep_frame()))
    by_registry = _line_colors(plots.plot_metric_vs_negatives(lower))
    assert list(by_display.values()) == list(by_registry.values())
    assert by_registry == by_display  # the legend shows display names too
    assert by_registry["MML"] == plots.loss_color("mml") and by_registry["CCL"] == plots.LOSS_COLORS["CCL"]
    variants = _sweep_frame().assign(loss=lambda d: d["loss"].map(
        {"CCL": "CCL (paper weight)", "BSL": "CCL (matched weight)", "MML": "MML"}))
    colors = _line_colors(plots.plot_metric_vs_negatives(variants, hue="loss"))
    assert colors == {"CCL (paper weight)": plots.loss_color("CCL"), "MML": plots.loss_color("MML"),
                      "CCL (matched weight)": plots.LOSS_COLORS["CCL (matched weight)"]}


def test_plot_learning_curves_marks_each_lines_best_epoch():
    from mmlrepro.plots import plot_learning_curves

    rows = [{"dataset": d, "loss_name": loss, "seed": seed, "epoch": e,
             "recall@20": r + (0.01 if seed == 2020 else 0.0)}
            for d in ("yelp2018", "gowalla") for seed in (2019, 2020)
            for loss, curve in (("MML", [0.1, 0.3, 0.2]), ("CCL", [0.1, 0.15, 0.25]))
            for e, r in enumerate(curve, 1)]
    fig = plot_learning_curves(pd.DataFrame(rows), "recall@20", style=None,
                               title_suffix="paper profile")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["yelp2018", "gowalla"]
    assert fig.get_suptitle() == "recall@20 per epoch [2 seeds · paper profile]"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["MML", "CCL", "selected epoch"] and axes[1].get_legend() is None
    fig.draw_without_rendering()  # runs the layout
    assert fig.legends[0].get_window_extent().x0 >= axes[1].get_window_extent().x1  # outside
    dots = [c for c in axes[0].collections if c.get_offsets().shape == (2, 2)][-1].get_offsets()
    # MML peaks at epoch 2 (mean 0.305), CCL at epoch 3 (mean 0.255)
    assert np.allclose(np.asarray(dots), [[2, 0.305], [3, 0.255]])
    with pytest.raises(ValueError, match="model"):
        plot_learning_curves(pd.DataFrame(rows), "recall@20")  # style="model" needs the column


def test_learning_curves_dot_the_epoch_the_run_selects():
    """SPEC §6: SimpleX on Gowalla selects on NDCG@20, so its dot on the Recall@20 curve sits
    at the NDCG peak; MF selects on Recall@20."""
    rows = [{"dataset": "gowalla", "model": model, "loss_name": "MML", "seed": 2019, "epoch": e,
             "recall@20": r, "ndcg@20": n}
            for model in ("mf", "simplex")
            for e, r, n in ((1, 0.10, 0.09), (2, 0.20, 0.08), (3, 0.15, 0.12))]
    fig = plots.plot_learning_curves(pd.DataFrame(rows), "recall@20", style="model")
    dots = [c for c in fig.axes[0].collections if c.get_offsets().shape == (2, 2)][-1]
    assert np.allclose(np.asarray(dots.get_offsets()), [[2, 0.20], [3, 0.15]])


def test_learning_curves_dot_the_epoch_of_the_selection_rule_not_the_maximum():
    """SPEC §6: a later epoch higher by min_delta (1e-6) or less is not selected."""
    rows = [{"dataset": "gowalla", "model": "mf", "loss_name": "MML", "seed": 2019, "epoch": e,
             "recall@20": r, "ndcg@20": 0.1}
            for e, r in ((1, 0.10), (2, 0.20), (3, 0.20 + 5e-7))]
    fig = plots.plot_learning_curves(pd.DataFrame(rows), "recall@20")
    dots = [c for c in fig.axes[0].collections if c.get_offsets().shape == (1, 2)][-1]
    assert np.allclose(np.asarray(dots.get_offsets()), [[2, 0.20]])


def test_plot_gap_vs_noise_draws_noise_band_and_gaps():
    from mmlrepro.plots import plot_gap_vs_noise

    df = pd.DataFrame({"label": ["a", "b", "a", "b"], "metric": ["recall@20"] * 2 + ["ndcg@20"] * 2,
                       "paper_gap": [4.0, 1.0, 5.0, 0.5], "reproduced_gap": [3.0, -1.0, 2.0, 0.0],
                       "noise": [1.5, 2.0, 1.0, float("nan")]})
    fig = plot_gap_vs_noise(df)
    ax = fig.axes[0]
    assert ax.get_title() == "recall@20"
    bars = [(p.get_x(), p.get_width()) for p in ax.patches]
    assert np.allclose(bars, [(-3.0, 6.0), (-4.0, 8.0)])  # ±2 sd around 0
    assert np.allclose(np.asarray(ax.collections[0].get_offsets()), [[4.0, 0], [1.0, 1]])
    assert [p.get_width() for p in fig.axes[1].patches] == [4.0, 0.0]  # NaN noise: no band


def test_mark_verdicts_keeps_the_verdict_readable_without_colour():
    import pandas as pd

    from mmlrepro.plots import mark_verdicts

    claims = pd.DataFrame({"claim": ["a", "b", "c", "d", "e"],
                           "verdict": ["holds (significant)", "does not hold", "missing runs", "holds",
                                       "holds (not significant)"]})
    assert list(mark_verdicts(claims)["verdict"]) == ["✓ holds (significant)", "✗ does not hold",
                                                      "– missing runs", "○ holds", "○ holds (not significant)"]
    assert list(claims["verdict"])[0] == "holds (significant)"  # the input is not changed
    # evidence levels: only a significant test earns the tick; untested claims are not ticked beside tested ones
    from mmlrepro.evidence import (
        FAILS_LEVELS,
        MISSING,
        NOT_SIG,
        RULE_ONLY,
        SIG_BOTH,
        SIG_SEEDS,
        SIG_USERS,
        UNTESTED,
    )
    levels = [SIG_BOTH, SIG_USERS, SIG_SEEDS, NOT_SIG, UNTESTED, RULE_ONLY, *FAILS_LEVELS, MISSING]
    marked = mark_verdicts(pd.DataFrame({"claim": range(len(levels)), "evidence": levels}))["evidence"]
    assert [m.split(" ", 1)[0] for m in marked] == ["✓", "✓", "✓", "○", "○", "○", "✗", "✗", "✗", "(✗)", "(✗)",
                                                    "✗", "–"]
