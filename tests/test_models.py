"""MF and SimpleX (SPEC §3): cosine scores, dropout, aggregators and the padding bug."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmlrepro.data import synthetic
from mmlrepro.kernels import compiled_kernels
from mmlrepro.models import MF, SimpleX, gathered_cosine, padded_history

# tiny history: user 0 -> [1, 2, 3], user 1 -> [4], user 2 -> [] ; 6 items
INDPTR = np.array([0, 3, 4, 4])
INDICES = np.array([1, 2, 3, 4])


def tiny_simplex(**kw) -> SimpleX:
    torch.manual_seed(0)
    kw = {"dim": 4, "init_std": 1.0, **kw}
    return SimpleX(3, 6, INDPTR, INDICES, **kw)


def test_mf_shapes_normalisation_and_dropout():
    torch.manual_seed(0)
    m = MF(10, 20, dim=8)                              # tiny init (1e-4) normalises fine
    users = torch.tensor([0, 3, 3, 9])
    assert m.user_emb.shape == (10, 8) and m.item_emb.shape == (20, 8)
    assert 0.5e-4 < m.user_emb.std().item() < 2e-4
    m.eval()
    u = m.user_vectors(users)
    assert u.shape == (4, 8)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(m.item_vectors().norm(dim=1), torch.ones(20))
    assert m.item_vectors(torch.tensor([[1, 2], [3, 4]])).shape == (2, 2, 8)
    assert torch.equal(m.user_vectors(users), u)       # eval is deterministic
    s = m.score_users(users)
    assert s.shape == (4, 20) and s.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(s, u @ m.item_vectors().T)
    m.train()
    d = m.user_vectors(torch.arange(10).repeat(50))
    dropped = d == 0
    assert 0.05 < dropped.float().mean() < 0.15         # p = 0.1 on the normalised vector
    ref = F.normalize(m.user_emb[torch.arange(10).repeat(50)], dim=-1) / 0.9
    torch.testing.assert_close(d[~dropped], ref[~dropped])
    torch.testing.assert_close(m.score_users(users), s)  # ranking scores never use dropout


def test_before_norm_dropout_gives_unit_vectors():
    torch.manual_seed(0)
    m = MF(10, 20, dim=8, dropout=0.5, dropout_placement="before_norm", init_std=1.0)
    u = m.user_vectors(torch.arange(10))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(10))
    assert (u == 0).any()


def test_forward_matches_dot_products():
    torch.manual_seed(0)
    m = MF(5, 9, dim=6, init_std=1.0).eval()
    users, pos, neg = torch.tensor([0, 4]), torch.tensor([1, 2]), torch.tensor([[3, 4, 5], [6, 7, 8]])
    p, n = m(users, pos, neg)
    s = m.score_users(users)
    torch.testing.assert_close(p, s[[0, 1], pos])
    torch.testing.assert_close(n, s.gather(1, neg))


def test_simplex_gate_one_equals_mf():
    torch.manual_seed(0)
    mf = MF(3, 6, dim=4, init_std=1.0)
    sx = tiny_simplex(gate=1.0, aggregator="attention", separate_history_table=True)
    with torch.no_grad():
        sx.user_emb.copy_(mf.user_emb)
        sx.item_emb.copy_(mf.item_emb)
    mf.eval(), sx.eval()
    users = torch.tensor([0, 1, 2])
    torch.testing.assert_close(sx.score_users(users), mf.score_users(users))
    neg = torch.tensor([[0, 5], [1, 2], [3, 3]])
    for a, b in zip(sx(users, torch.tensor([1, 4, 0]), neg), mf(users, torch.tensor([1, 4, 0]), neg),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_mean_aggregator_by_hand():
    m = tiny_simplex(gate=0.25, aggregator="mean").eval()
    e, E = m.user_emb.detach(), m.item_emb.detach()
    V = m.V.weight.detach()
    h = m.raw_user_vectors(torch.tensor([0, 1, 2])).detach()
    torch.testing.assert_close(h[0], 0.25 * e[0] + 0.75 * V @ E[[1, 2, 3]].mean(0))
    torch.testing.assert_close(h[1], 0.25 * e[1] + 0.75 * V @ E[4])
    torch.testing.assert_close(h[2], 0.25 * e[2])                # empty history: p_u = 0
    # the positive is dropped from the history
    h0 = m.raw_user_vectors(torch.tensor([0]), exclude_items=torch.tensor([2])).detach()
    torch.testing.assert_close(h0[0], 0.25 * e[0] + 0.75 * V @ E[[1, 3]].mean(0))


def attention_by_hand(m: SimpleX, u: int, items: list, n_pad: int) -> torch.Tensor:
    e_u = m.user_emb[u].detach()
    H = (m.hist_emb if m.hist_emb is not None else m.item_emb).detach()
    W, b, V = m.W.weight.detach(), m.W.bias.detach(), m.V.weight.detach()
    logits = [float(e_u @ torch.tanh(W @ H[k] + b)) for k in items]
    den = sum(math.exp(s) for s in logits) + n_pad
    p = sum(math.exp(s) / den * H[k] for s, k in zip(logits, items, strict=True))
    return m.gate * e_u + (1 - m.gate) * V @ p


@pytest.mark.parametrize("bug", [True, False])
@pytest.mark.parametrize("separate", [True, False])
def test_attention_by_hand(bug, separate):
    m = tiny_simplex(gate=0.6, aggregator="attention", padding_softmax_bug=bug,
                     separate_history_table=separate).eval()
    with torch.no_grad():
        m.W.bias.fill_(0.3)
    assert m.history.shape == (3, 3)                        # L = longest history
    h = m.raw_user_vectors(torch.tensor([0, 1, 2])).detach()
    pads = (lambda n: n) if bug else (lambda n: 0)
    torch.testing.assert_close(h[0], attention_by_hand(m, 0, [1, 2, 3], pads(0)))
    torch.testing.assert_close(h[1], attention_by_hand(m, 1, [4], pads(2)))
    torch.testing.assert_close(h[2], 0.6 * m.user_emb[2].detach())
    # excluding the positive: one slot fewer, one pad more
    hx = m.raw_user_vectors(torch.tensor([0, 1]), exclude_items=torch.tensor([3, 4])).detach()
    torch.testing.assert_close(hx[0], attention_by_hand(m, 0, [1, 2], pads(1)))
    torch.testing.assert_close(hx[1], 0.6 * m.user_emb[1].detach())
    assert torch.isfinite(hx).all()


def test_bug_shrinks_short_histories():
    kw = {"gate": 0.0, "aggregator": "attention"}
    with_bug, without = tiny_simplex(padding_softmax_bug=True, **kw), tiny_simplex(
        padding_softmax_bug=False, **kw)
    u = torch.tensor([1])
    ratio = with_bug.raw_user_vectors(u).norm() / without.raw_user_vectors(u).norm()
    with torch.no_grad():
        a = math.exp(float(with_bug.user_emb[1] @ torch.tanh(with_bug.W(with_bug.item_emb[4]))))
    assert ratio.item() == pytest.approx(a / (a + 2), rel=1e-5)


def test_training_forward_excludes_positive():
    m = tiny_simplex(gate=0.5, aggregator="mean", dropout=0.0)
    users, pos, neg = torch.tensor([0]), torch.tensor([2]), torch.tensor([[5]])
    p, _ = m(users, pos, neg)
    ref = (m.user_vectors(users, exclude_items=pos) * m.item_vectors(pos)).sum(-1)
    torch.testing.assert_close(p, ref)
    m.eval()
    p_eval, _ = m(users, pos, neg)
    assert not torch.allclose(p, p_eval)                    # eval uses the full history


def test_history_cap_keeps_last_items():
    hist, lens = padded_history(np.array([0, 5, 6, 6]), np.array([9, 8, 7, 6, 5, 4]), 10, cap=2)
    assert hist.tolist() == [[6, 5], [4, 0], [0, 0]] and lens.tolist() == [2, 1, 0]
    hist, lens = padded_history(np.array([0, 5, 6, 6]), np.array([9, 8, 7, 6, 5, 4]), 10)
    assert hist.tolist()[0] == [9, 8, 7, 6, 5] and lens.tolist() == [5, 1, 0]
    m = tiny_simplex(history_cap=2)
    assert m.history.tolist() == [[2, 3], [4, 0], [0, 0]]
    assert "history" not in m.state_dict()


def test_embedding_tables_and_parameters():
    m = tiny_simplex(aggregator="attention", separate_history_table=True)
    assert [t.shape for t in m.embedding_tables()] == [(3, 4), (6, 4), (6, 4)]
    assert m.embedding_tables()[2] is m.hist_emb
    shared = tiny_simplex()
    tables = shared.embedding_tables()
    assert len(tables) == 2 and tables[0] is shared.user_emb and tables[1] is shared.item_emb
    assert isinstance(m.user_emb, torch.nn.Parameter) and m.V.bias is None
    assert MF(2, 3).embedding_tables()[0].shape == (2, 64)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="dropout_placement"):
        MF(2, 3, dropout_placement="middle")
    with pytest.raises(ValueError, match="dropout"):
        MF(2, 3, dropout=1.0)
    with pytest.raises(ValueError, match="aggregator"):
        tiny_simplex(aggregator="max")
    with pytest.raises(ValueError, match="gate"):
        tiny_simplex(gate=1.5)
    with pytest.raises(ValueError, match="history_cap"):
        tiny_simplex(history_cap=0)
    with pytest.raises(ValueError, match="history_indptr"):
        SimpleX(2, 6, INDPTR, INDICES)
    with pytest.raises(ValueError, match="outside"):
        SimpleX(3, 4, INDPTR, INDICES)


def test_gradients_flow_on_synthetic():
    ds = synthetic(50, 80, seed=0)
    torch.manual_seed(0)
    m = SimpleX(ds.n_users, ds.n_items, ds.train_indptr, ds.train_indices, dim=8,
                aggregator="attention", gate=0.8, separate_history_table=True)
    users = torch.from_numpy(ds.train_users()[:32])
    pos = torch.from_numpy(ds.train_items()[:32])
    p, n = m(users, pos, torch.randint(ds.n_items, (32, 5)))
    (n.sum() - p.sum()).backward()
    for t in [*m.embedding_tables(), m.V.weight, m.W.weight, m.W.bias]:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def _textbook_cosine(u, table, idx):
    return torch.bmm(F.normalize(F.embedding(idx, table), dim=-1), u.unsqueeze(-1)).squeeze(-1)


def test_gathered_cosine_passes_gradcheck():
    torch.manual_seed(0)
    u = torch.randn(4, 5, dtype=torch.double, requires_grad=True)
    table = torch.randn(7, 5, dtype=torch.double, requires_grad=True)
    idx = torch.randint(0, 7, (4, 3))
    assert torch.autograd.gradcheck(lambda a, b: gathered_cosine(a, b, idx), (u, table))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_gathered_cosine_equals_normalize_then_bmm(sparse, compiled):
    """Values and both gradients, with repeated rows and a zero row (the eps clamp active),
    through the PyTorch function and the compiled kernel (its table gradient always dense)."""
    torch.manual_seed(1)
    u = torch.randn(6, 8, dtype=torch.double, requires_grad=True)
    table = torch.randn(10, 8, dtype=torch.double)
    table[3] = 0.0
    table.requires_grad_()
    idx = torch.randint(0, 10, (6, 5))
    idx[0, :3] = 3
    idx[1, :] = 4                                      # the same row five times in one user
    weights = torch.randn(6, 5, dtype=torch.double)
    got = gathered_cosine(u, table, idx, sparse_grad=sparse, compiled=compiled)
    want = _textbook_cosine(u, table, idx)
    torch.testing.assert_close(got, want)
    got_u, got_t = torch.autograd.grad((got * weights).sum(), (u, table))
    want_u, want_t = torch.autograd.grad((want * weights).sum(), (u, table))
    assert got_t.is_sparse == (sparse and not (compiled and compiled_kernels()))
    torch.testing.assert_close(got_u, want_u)
    torch.testing.assert_close(got_t.to_dense(), want_t, rtol=1e-12, atol=0.0)


def test_gathered_cosine_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="gathered_cosine"):
        gathered_cosine(torch.zeros(3, 4), torch.zeros(5, 4), torch.zeros(2, 2, dtype=torch.long))


def test_fused_and_textbook_model_scores_agree():
    torch.manual_seed(2)
    m = MF(30, 40, dim=8, dropout=0.0)
    users, pos, neg = torch.arange(5), torch.arange(5), torch.randint(0, 40, (5, 7))
    fused = m(users, pos, neg)
    m.fused_scores = False
    plain = m(users, pos, neg)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b)


def _old_aggregate(m: SimpleX, users, e_u, exclude_items=None):
    """The aggregation before issue 19 (data-dependent width and ``nonzero``), for comparison."""
    lens = m.history_len[users]
    width = max(int(lens.max()), 1) if len(users) else 1
    idx = m.history[users, :width]
    mask = torch.arange(width) < lens.unsqueeze(1)
    if exclude_items is not None:
        mask &= idx != exclude_items.unsqueeze(1)
    rows, cols = mask.nonzero(as_tuple=True)
    table = m.hist_emb if m.hist_emb is not None else m.item_emb
    e = m.rows(table, idx[rows, cols])
    n_valid = mask.sum(1).to(e.dtype)
    if m.aggregator == "mean":
        w = (1.0 / n_valid.clamp(min=1.0))[rows]
    else:
        s = (torch.tanh(m.W(e)) * e_u[rows]).sum(-1)
        mx = torch.full_like(n_valid, float("-inf")).scatter_reduce(0, rows, s.detach(), "amax")
        if m.padding_softmax_bug:
            mx = mx.clamp(min=0.0)
            extra = (m.history.shape[1] - n_valid) * torch.exp(-mx)
        else:
            mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
            extra = torch.zeros_like(mx)
        num = torch.exp(s - mx[rows])
        w = num / extra.index_add_(0, rows, num)[rows]
    return torch.zeros_like(e_u).index_add_(0, rows, w.unsqueeze(1) * e)


@pytest.mark.parametrize("aggregator,bug", [("attention", True), ("attention", False), ("mean", True)])
def test_fixed_width_history_equals_the_old_aggregation(aggregator, bug):
    """Issue 19: the fixed-width slots (no size read back to the host, the form any GPU uses)
    give the old data-dependent aggregation's values bit for bit on the CPU (gradients to
    float rounding: the zero slots reorder the sums of W's gradient),
    with empty histories, a history only of the excluded positive and repeated users."""
    rng = np.random.default_rng(0)
    lens = rng.integers(0, 12, size=40)
    lens[:3] = [0, 1, 11]
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = rng.integers(0, 30, size=indptr[-1])
    torch.manual_seed(0)
    m = SimpleX(40, 30, indptr, indices, dim=8, aggregator=aggregator, gate=0.5, init_std=0.5,
                separate_history_table=True, padding_softmax_bug=bug)
    users = torch.from_numpy(rng.integers(0, 40, size=64))
    users[:4] = torch.tensor([0, 1, 2, 2])
    exclude = torch.from_numpy(indices[rng.integers(0, len(indices), size=64)])
    exclude[1] = int(indices[indptr[1]])                  # user 1's only item is excluded
    e_u = m.user_emb[users]
    for ex in (None, exclude):
        want = _old_aggregate(m, users, e_u, ex)
        got = m.aggregate(users, e_u, ex, fixed=True)
        assert torch.equal(got, want)
        assert torch.equal(m.aggregate(users, e_u, ex, fixed=False), want)
        weights = torch.randn_like(want)
        params = [p for p in m.parameters() if p.requires_grad]
        g_want = torch.autograd.grad((want * weights).sum(), params, allow_unused=True,
                                     retain_graph=True)
        g_got = torch.autograd.grad((got * weights).sum(), params, allow_unused=True,
                                     retain_graph=True)
        for a, b in zip(g_got, g_want, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # sums reordered


def test_fixed_width_history_reads_nothing_back(monkeypatch):
    """The fixed-width path calls neither ``nonzero`` nor ``Tensor.item``/``int()`` on a tensor."""
    m = tiny_simplex(aggregator="attention", gate=0.5)
    users, e_u = torch.tensor([0, 1, 2]), torch.randn(3, 4)

    def refuse(*args, **kwargs):
        raise AssertionError("a host read in the fixed-width path")

    monkeypatch.setattr(torch.Tensor, "nonzero", refuse)
    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__int__", refuse)
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    assert m.aggregate(users, e_u, torch.tensor([1, 4, 0]), fixed=True).shape == (3, 4)
