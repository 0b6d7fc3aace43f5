"""Tests of mmlrepro.losses (SPEC §5), float64 throughout unless stated."""

import math

import numpy as np
import pytest
import torch

from mmlrepro.geometry import active_negatives, penalty_curve
from mmlrepro.losses import (
    LOSSES,
    bsl,
    ccl,
    debiased_ccl,
    debiased_infonce,
    describe,
    get_loss,
    infonce_plus,
    loss_names,
    mml,
    ssm,
)

F64 = torch.float64
GOWALLA_MML = {
    "margins": [0.7, 0.8, 0.9],
    "weights": [0.10, 0.15, 0.75],
    "pos_weight": 1.0,
    "neg_weight": 700.0,
}


def t(x, dtype=F64):
    return torch.tensor(x, dtype=dtype)


def relu(x):
    return max(x, 0.0)


def lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(7, generator=g, dtype=F64) * 2.3 - 1.0  # [-1, 1.3): dropout lets s > 1
    neg = torch.rand(7, 5, generator=g, dtype=F64) * 2.3 - 1.0
    users = torch.tensor([3, 1, 3, 0, 1, 3, 5])
    return pos, neg, users


# ------------------------------------------------------------------ hand-worked values


def test_registry_names():
    assert loss_names() == [
        "mml",
        "ccl",
        "bpr",
        "hinge",
        "softmax_ce",
        "mse",
        "bsl",
        "ssm",
        "infonce_plus",
        "debiased_infonce",
        "debiased_ccl",
    ]
    assert set(LOSSES) == set(loss_names())
    assert "Σ_k w_k·relu(s⁻_j − m_k)" in describe("mml")
    assert "margins=(0.7, 0.8, 0.9)" in describe("mml")


def test_mml_hand():
    # row 0: s⁺ = 0.5, s⁻ = [0.95, 0.75]; margins [0.7, 0.8, 0.9], weights [0.1, 0.15, 0.75]
    #   positive: relu(1 − 0.5) = 0.5
    #   s⁻ = 0.95: 0.1·0.25 + 0.15·0.15 + 0.75·0.05 = 0.025 + 0.0225 + 0.0375 = 0.085
    #   s⁻ = 0.75: 0.1·0.05 = 0.005
    #   negative: 700/2 · (0.085 + 0.005) = 31.5        → row loss 32.0
    # row 1: s⁺ = 1.2 (> 1, no positive loss), s⁻ = [0.1, −0.3] below every margin → 0
    # mean = 16.0
    pos, neg = t([0.5, 1.2]), t([[0.95, 0.75], [0.1, -0.3]])
    assert get_loss("mml", **GOWALLA_MML)(pos, neg).item() == pytest.approx(16.0, abs=1e-12)
    # pos_weight 2 doubles the positive part: (2·0.5 + 31.5 + 0)/2 = 16.25
    hp = {**GOWALLA_MML, "pos_weight": 2.0}
    assert get_loss("mml", **hp)(pos, neg).item() == pytest.approx(16.25, abs=1e-12)


def test_ccl_hand():
    # row 0: relu(1 − 0.5) + 150/2·(relu(0.95 − 0.9) + relu(0.75 − 0.9)) = 0.5 + 75·0.05 = 4.25
    # row 1: 0 → mean 2.125
    pos, neg = t([0.5, 1.2]), t([[0.95, 0.75], [0.1, -0.3]])
    assert get_loss("ccl", margin=0.9, neg_weight=150)(pos, neg).item() == pytest.approx(2.125)


def test_pairwise_and_mse_hand():
    pos, neg = t([0.5]), t([[0.8, 0.2]])
    # BPR: mean(−log σ(0.5 − 0.8), −log σ(0.5 − 0.2)) = (log(1 + e^{0.3}) + log(1 + e^{−0.3}))/2
    want = (math.log(1 + math.exp(0.3)) + math.log(1 + math.exp(-0.3))) / 2
    assert get_loss("bpr")(pos, neg).item() == pytest.approx(want, abs=1e-14)
    # hinge m = 0.9: mean(relu(0.9 + 0.8 − 0.5), relu(0.9 + 0.2 − 0.5)) = (1.2 + 0.6)/2 = 0.9
    assert get_loss("hinge")(pos, neg).item() == pytest.approx(0.9, abs=1e-14)
    # MSE: ½(0.5 − 1)² + ½(0.8² + 0.2²) = 0.125 + ½·0.68 = 0.465
    assert get_loss("mse")(pos, neg).item() == pytest.approx(0.465, abs=1e-14)
    # softmax CE: −0.5 + log(e^{0.5} + e^{0.8} + e^{0.2})
    want = -0.5 + math.log(math.exp(0.5) + math.exp(0.8) + math.exp(0.2))
    assert get_loss("softmax_ce")(pos, neg).item() == pytest.approx(want, abs=1e-14)


def test_softmax_family_hand():
    pos, neg = t([0.5]), t([[0.8, 0.2]])
    # τ = 0.5: s⁺/τ = 1.0, s⁻/τ = [1.6, 0.4]
    # SSM: −1 + log(e^1 + e^{1.6} + e^{0.4}) = −1 + log(2.71828 + 4.95303 + 1.49182) ≈ −1 + 2.21519 = 1.21519
    want = -1 + math.log(math.exp(1.0) + math.exp(1.6) + math.exp(0.4))
    assert want == pytest.approx(1.21519, abs=1e-5)
    assert get_loss("ssm", tau=0.5)(pos, neg).item() == pytest.approx(want, abs=1e-14)
    # InfoNCE+ λ = 1.1, ε = 0.5: −1 + 1.1·log(0.5·e^1 + e^{1.6} + e^{0.4})
    want = -1 + 1.1 * math.log(0.5 * math.exp(1.0) + math.exp(1.6) + math.exp(0.4))
    got = get_loss("infonce_plus", tau=0.5, lam=1.1, eps=0.5)(pos, neg).item()
    assert got == pytest.approx(want, abs=1e-14)
    # BSL reweight τ₁ = 0.5, τ₂ = 1.2: −1 + 1.2·log(e^{1.6} + e^{0.4})
    want = -1 + 1.2 * math.log(math.exp(1.6) + math.exp(0.4))
    got = get_loss("bsl", tau1=0.5, tau2=1.2, mode="reweight")(pos, neg).item()
    assert got == pytest.approx(want, abs=1e-14)


def test_bsl_multi_hand():
    # rows 0 and 2 share user 7, row 1 is alone; τ₁ = 0.5, τ₂ = 1.2, N = 2
    # row 0: −log((e^{0.5/0.5} + e^{0.9/0.5})/2) + 1.2·log((e^{1.6} + e^{0.4})/2)
    # row 1: −0.3/0.5 + 1.2·log((e^{0.2} + e^{−0.2})/2)
    # row 2: −log((e^{1.0} + e^{1.8})/2) + 1.2·log((e^{0} + e^{0.8})/2)
    pos = t([0.5, 0.3, 0.9])
    neg = t([[0.8, 0.2], [0.1, -0.1], [0.0, 0.4]])
    users = torch.tensor([7, 2, 7])
    p02 = -math.log((math.exp(1.0) + math.exp(1.8)) / 2)
    rows = [
        p02 + 1.2 * math.log((math.exp(1.6) + math.exp(0.4)) / 2),
        -0.6 + 1.2 * math.log((math.exp(0.2) + math.exp(-0.2)) / 2),
        p02 + 1.2 * math.log((1 + math.exp(0.8)) / 2),
    ]
    got = get_loss("bsl", tau1=0.5, tau2=1.2, mode="multi")(pos, neg, users).item()
    assert got == pytest.approx(sum(rows) / 3, abs=1e-14)


def test_debiased_infonce_hand():
    # τ = 0.5, τ⁺ = 0.1, s⁺ = 0.5, s⁻ = [0.8, 0.2]:
    # mean e^{s⁻/τ} = (e^{1.6} + e^{0.4})/2 ≈ 3.22243; τ⁺·e^{1} ≈ 0.27183
    # g = (3.22243 − 0.27183)/0.9 ≈ 3.27845 > e^{−2} → loss = −1 + log(2.71828 + 6.55689) ≈ 1.22734
    g = ((math.exp(1.6) + math.exp(0.4)) / 2 - 0.1 * math.e) / 0.9
    want = -1 + math.log(math.e + 2 * g)
    assert want == pytest.approx(1.22734, abs=1e-5)
    got = get_loss("debiased_infonce", tau=0.5, tau_plus=0.1)(t([0.5]), t([[0.8, 0.2]])).item()
    assert got == pytest.approx(want, abs=1e-14)
    # clamp active: s⁺ = 1, s⁻ = [−1, −1], τ⁺ = 0.5: mean = e^{−2}, τ⁺·e^2 ≈ 3.69 → g < 0,
    # so N·max(g, e^{−1/τ}) = 2e^{−2} and loss = −2 + log(e^2 + 2e^{−2})
    want = -2 + math.log(math.exp(2) + 2 * math.exp(-2))
    got = get_loss("debiased_infonce", tau=0.5, tau_plus=0.5)(t([1.0]), t([[-1.0, -1.0]])).item()
    assert got == pytest.approx(want, abs=1e-14)


def test_debiased_ccl_hand():
    # m = 0.9, w = 150, τ⁺ = 0.1
    # row 0: s⁺ = 0.95, s⁻ = [0.95, 0.5]: relu(1 − 0.95) = 0.05;
    #        mean relu(s⁻ − m) = 0.025; τ⁺·relu(0.95 − 0.9) = 0.005; 150/0.9·0.02 = 3.3333…
    # row 1: s⁺ = 1.0, s⁻ = [0.91, 0.0]: mean relu = 0.005 < τ⁺·0.1 = 0.01 → clamped to 0
    # mean = (0.05 + 10/3 + 0)/2
    pos, neg = t([0.95, 1.0]), t([[0.95, 0.5], [0.91, 0.0]])
    got = get_loss("debiased_ccl", margin=0.9, neg_weight=150, tau_plus=0.1)(pos, neg).item()
    assert got == pytest.approx((0.05 + 10 / 3) / 2, abs=1e-12)


# ------------------------------------------------------------------ naive loop references


def naive(name, hp, pos, neg, users):
    pos, neg, users = pos.tolist(), neg.tolist(), users.tolist()
    rows = []
    for b, (sp, sn) in enumerate(zip(pos, neg, strict=True)):
        n = len(sn)
        if name == "mml":
            pen = sum(
                w * relu(s - m)
                for s in sn
                for m, w in zip(hp["margins"], hp["weights"], strict=True)
            )
            rows.append(hp["pos_weight"] * relu(1 - sp) + hp["neg_weight"] / n * pen)
        elif name == "ccl":
            rows.append(
                relu(1 - sp) + hp["neg_weight"] / n * sum(relu(s - hp["margin"]) for s in sn)
            )
        elif name == "bpr":
            rows.append(sum(-math.log(1 / (1 + math.exp(-(sp - s)))) for s in sn) / n)
        elif name == "hinge":
            rows.append(sum(relu(hp["margin"] + s - sp) for s in sn) / n)
        elif name == "softmax_ce":
            rows.append(-math.log(math.exp(sp) / (math.exp(sp) + sum(math.exp(s) for s in sn))))
        elif name == "mse":
            rows.append(0.5 * (sp - 1) ** 2 + 0.5 * sum(s * s for s in sn))
        elif name == "bsl":
            t1, t2 = hp["tau1"], hp["tau2"]
            if hp["mode"] == "multi":
                same = [pos[c] for c in range(len(pos)) if users[c] == users[b]]
                p = -math.log(sum(math.exp(s / t1) for s in same) / len(same))
                rows.append(p + t2 * math.log(sum(math.exp(s / t1) for s in sn) / n))
            else:
                rows.append(-sp / t1 + t2 * math.log(sum(math.exp(s / t1) for s in sn)))
        elif name == "ssm":
            tau = hp["tau"]
            rows.append(
                -sp / tau + math.log(math.exp(sp / tau) + sum(math.exp(s / tau) for s in sn))
            )
        elif name == "infonce_plus":
            tau, lam, eps = hp["tau"], hp["lam"], hp["eps"]
            part = eps * math.exp(sp / tau) + sum(math.exp(s / tau) for s in sn)
            rows.append(-sp / tau + lam * math.log(part))
        elif name == "debiased_infonce":
            tau, tp = hp["tau"], hp["tau_plus"]
            g = (sum(math.exp(s / tau) for s in sn) / n - tp * math.exp(sp / tau)) / (1 - tp)
            rows.append(-sp / tau + math.log(math.exp(sp / tau) + n * max(g, math.exp(-1 / tau))))
        elif name == "debiased_ccl":
            m, w, tp = hp["margin"], hp["neg_weight"], hp["tau_plus"]
            inner = sum(relu(s - m) for s in sn) / n - tp * relu(sp - m)
            rows.append(relu(1 - sp) + w / (1 - tp) * max(0.0, inner))
        else:
            raise AssertionError(name)
    return sum(rows) / len(rows)


CASES = [
    ("mml", GOWALLA_MML),
    (
        "mml",
        {
            "margins": [-0.2, 0.3, 0.6, 0.9],
            "weights": [0.05, 0.15, 0.2, 0.6],
            "pos_weight": 0.5,
            "neg_weight": 400,
        },
    ),
    ("ccl", {"margin": 0.9, "neg_weight": 150}),
    ("ccl", {"margin": 0.2, "neg_weight": 250}),
    ("bpr", {}),
    ("hinge", {"margin": 0.9}),
    ("hinge", {"margin": 0.3}),
    ("softmax_ce", {}),
    ("mse", {}),
    ("bsl", {"tau1": 0.08, "tau2": 1.22, "mode": "multi"}),
    ("bsl", {"tau1": 0.11, "tau2": 1.10, "mode": "multi"}),
    ("bsl", {"tau1": 0.2, "tau2": 0.8, "mode": "reweight"}),
    ("ssm", {"tau": 0.08}),
    ("ssm", {"tau": 1.0}),
    ("infonce_plus", {"tau": 0.1, "lam": 1.1, "eps": 0.0}),
    ("infonce_plus", {"tau": 0.1, "lam": 0.9, "eps": 0.3}),
    ("infonce_plus", {"tau": 0.5, "lam": 1.0, "eps": 2.0}),
    ("debiased_infonce", {"tau": 0.1, "tau_plus": 0.05}),
    ("debiased_infonce", {"tau": 0.5, "tau_plus": 0.3}),
    ("debiased_infonce", {"tau": 0.08, "tau_plus": 0.9}),  # clamp e^{−1/τ} active for rows
    ("debiased_ccl", {"margin": 0.5, "neg_weight": 150, "tau_plus": 0.1}),
    ("debiased_ccl", {"margin": 0.0, "neg_weight": 20, "tau_plus": 0.6}),
]


@pytest.mark.parametrize("name,hp", CASES)
def test_against_naive_loop(name, hp, batch):
    pos, neg, users = batch
    assert get_loss(name, **hp)(pos, neg, users).item() == pytest.approx(
        naive(name, hp, pos, neg, users), rel=1e-12, abs=1e-12
    )


def test_every_loss_has_a_naive_case():
    assert {name for name, _ in CASES} == set(LOSSES)


def test_debiased_infonce_clamp_case_is_exercised(batch):
    # the τ⁺ = 0.9 case must really hit g <= e^{−1/τ} on some rows and not on others
    pos, neg, _ = batch
    tau, tp = 0.08, 0.9
    g = ((neg / tau).exp().mean(-1) - tp * (pos / tau).exp()) / (1 - tp)
    clamped = g <= math.exp(-1 / tau)
    assert clamped.any() and not clamped.all()


# ------------------------------------------------------------------ exact identities


def test_mml_one_margin_is_exactly_ccl(batch):
    pos, neg, _ = batch
    for w in (1.0, 150.0, 250.0, 700.0):
        a = get_loss("mml", margins=[0.9], weights=[1], pos_weight=1, neg_weight=w)(pos, neg)
        b = get_loss("ccl", margin=0.9, neg_weight=w)(pos, neg)
        assert torch.equal(a, b)
        # also the gradients, and in float32
        p, n = pos.float().requires_grad_(), neg.float().requires_grad_()
        ga = torch.autograd.grad(
            mml(p, n, margins=[0.9], weights=[1.0], pos_weight=1.0, neg_weight=w), [p, n]
        )
        gb = torch.autograd.grad(ccl(p, n, margin=0.9, neg_weight=w), [p, n])
        assert all(torch.equal(x, y) for x, y in zip(ga, gb, strict=True))


def test_infonce_plus_special_cases(batch):
    pos, neg, _ = batch
    for tau in (0.08, 0.1, 0.7):
        # λ = ε = 1 is InfoNCE / SSM, exactly
        assert torch.equal(
            infonce_plus(pos, neg, tau=tau, lam=1.0, eps=1.0), ssm(pos, neg, tau=tau)
        )
        # ε = 0 drops the positive from the partition: −s⁺/τ + λ·logsumexp(s⁻/τ)
        for lam in (1.0, 1.1):
            want = (-pos / tau + lam * torch.logsumexp(neg / tau, -1)).mean()
            got = infonce_plus(pos, neg, tau=tau, lam=lam, eps=0.0)
            assert torch.allclose(got, want, rtol=0, atol=1e-13)
            # and tiny ε converges to it from above (the ε·e^{s⁺/τ} term shrinks away)
            near = infonce_plus(pos, neg, tau=tau, lam=lam, eps=1e-16)
            assert 0 <= (near - got).item() < 1e-9


def test_bsl_reweight_is_mine_plus(batch):
    pos, neg, users = batch
    a = get_loss("bsl", tau1=0.11, tau2=1.1, mode="reweight")(pos, neg, users)
    b = get_loss("infonce_plus", tau=0.11, lam=1.1, eps=0)(pos, neg)
    assert torch.equal(a, b)


def test_bsl_multi_distinct_users_and_permutation(batch):
    pos, neg, users = batch
    hp = {"tau1": 0.08, "tau2": 1.22, "mode": "multi"}
    # all users distinct: B_u = {b}, so the positive term is −s⁺/τ₁
    distinct = torch.arange(7) * 10
    want = (-pos / 0.08 + 1.22 * (torch.logsumexp(neg / 0.08, -1) - math.log(5))).mean()
    assert torch.allclose(bsl(pos, neg, distinct, **hp), want, rtol=0, atol=1e-12)
    # row order does not matter
    perm = torch.tensor([4, 0, 6, 2, 5, 1, 3])
    a = bsl(pos, neg, users, **hp)
    b = bsl(pos[perm], neg[perm], users[perm], **hp)
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    # huge scores in a group: the group-max shift keeps it finite (raw exp would overflow)
    big = bsl(pos * 100, neg, users, **hp)
    assert torch.isfinite(big)


def test_debiased_with_zero_prior_is_biased(batch):
    pos, neg, _ = batch
    # debiased CCL with τ⁺ = 0 is CCL, exactly
    for m, w in ((0.9, 150.0), (0.2, 250.0)):
        a = debiased_ccl(pos, neg, margin=m, neg_weight=w, tau_plus=0.0)
        assert torch.equal(a, ccl(pos, neg, margin=m, neg_weight=w))
    # debiased InfoNCE with τ⁺ = 0: −s⁺/τ + log(e^{s⁺/τ} + N·max(mean_j e^{s⁻_j/τ}, e^{−1/τ})).
    # Every s⁻ here is >= −1, so mean e^{s⁻/τ} >= e^{−1/τ}, the max is inactive and it is SSM
    # (N·mean = Σ: equal up to the log N round trip).
    for tau in (0.08, 0.3):
        a = debiased_infonce(pos, neg, tau=tau, tau_plus=0.0)
        assert torch.allclose(a, ssm(pos, neg, tau=tau), rtol=1e-14, atol=1e-13)
    # below −1 the floor takes over: N·e^{−1/τ} replaces Σ_j e^{s⁻_j/τ}
    pos1, neg1 = t([0.5]), t([[-1.5, -2.0]])
    want = -0.5 / 0.2 + math.log(math.exp(0.5 / 0.2) + 2 * math.exp(-1 / 0.2))
    assert debiased_infonce(pos1, neg1, tau=0.2, tau_plus=0.0).item() == pytest.approx(
        want, abs=1e-14
    )


# ------------------------------------------------------------------ gradients


EXTREME_HP = {
    "mml": GOWALLA_MML,
    "ccl": {"margin": 0.9, "neg_weight": 250},
    "bpr": {},
    "hinge": {"margin": 0.9},
    "softmax_ce": {},
    "mse": {},
    "bsl": {"tau1": 0.08, "tau2": 1.22, "mode": "multi"},
    "ssm": {"tau": 0.08},
    "infonce_plus": {"tau": 0.08, "lam": 1.1, "eps": 0.5},
    "debiased_infonce": {"tau": 0.08, "tau_plus": 0.1},
    "debiased_ccl": {"margin": 0.9, "neg_weight": 150, "tau_plus": 0.1},
}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_finite_gradients_at_extremes(name, dtype):
    # scores at ±1 and 1.3 (dropout), τ = 0.08: e^{1.3/0.08} ≈ 1.1e7, fine only in log space
    vals = [-1.0, 1.0, 1.3]
    pos = t([a for a in vals for _ in vals], dtype).requires_grad_()
    neg = t([[b, b, -b, 1.3] for _ in vals for b in vals], dtype).requires_grad_()
    users = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3])
    hps = [EXTREME_HP[name]]
    if name == "bsl":
        hps.append({"tau1": 0.08, "tau2": 1.22, "mode": "reweight"})
    if name == "infonce_plus":
        hps.append({"tau": 0.08, "lam": 1.1, "eps": 0.0})
    if name == "debiased_infonce":
        hps.append({"tau": 0.08, "tau_plus": 0.9})  # g < 0 on some rows → floor branch
        hps.append({"tau": 0.01, "tau_plus": 0.5})
    for hp in hps:
        loss = get_loss(name, **hp)(pos, neg, users)
        gp, gn = torch.autograd.grad(loss, [pos, neg])
        assert torch.isfinite(loss), hp
        assert torch.isfinite(gp).all() and torch.isfinite(gn).all(), hp


@pytest.mark.parametrize(
    "name,hp",
    [
        ("mml", GOWALLA_MML),
        ("bsl", {"tau1": 0.3, "tau2": 1.22, "mode": "multi"}),
        ("ssm", {"tau": 0.2}),
        ("infonce_plus", {"tau": 0.2, "lam": 1.1, "eps": 0.5}),
        ("debiased_infonce", {"tau": 0.2, "tau_plus": 0.3}),
        ("debiased_ccl", {"margin": 0.5, "neg_weight": 3.0, "tau_plus": 0.2}),
        ("bpr", {}),
    ],
)
def test_gradcheck(name, hp, batch):
    pos, neg, users = batch
    loss = get_loss(name, **hp)
    pos, neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p, n: loss(p, n, users), (pos, neg))


def test_mml_gradient_is_the_slope(batch):
    # ∂loss/∂s⁻_{bj} = (1/B)·(w_neg/N)·Σ_{m_k < s⁻} w_k  (SPEC §5 notes)
    pos, neg, _ = batch
    neg = neg.clone().requires_grad_()
    (g,) = torch.autograd.grad(get_loss("mml", **GOWALLA_MML)(pos, neg), [neg])
    _, slope = penalty_curve(neg.detach(), GOWALLA_MML["margins"], GOWALLA_MML["weights"], 700.0, 5)
    assert torch.allclose(g, slope / 7, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ validation

BAD = [
    ("nope", {}, "unknown loss"),
    ("mml", {"margin": 0.9}, "margin"),  # unknown hyperparameter
    ("ccl", {"tau": 0.1}, "tau"),
    ("bpr", {"margin": 0.9}, "margin"),
    ("mml", {"margins": [0.9, 0.8], "weights": [0.5, 0.5]}, "margins"),
    ("mml", {"margins": [0.8, 0.8], "weights": [0.5, 0.5]}, "margins"),
    ("mml", {"margins": [0.5, 1.1], "weights": [0.5, 0.5]}, "margins"),
    ("mml", {"margins": [-1.5, 0.5], "weights": [0.5, 0.5]}, "margins"),
    ("mml", {"margins": [], "weights": []}, "margins"),
    ("mml", {"margins": 0.9, "weights": [1.0]}, "margins"),
    ("mml", {"margins": [0.5, 0.9], "weights": [0.5, -0.1]}, "weights"),
    ("mml", {"margins": [0.5, 0.9], "weights": [1.0]}, "weights"),
    ("mml", {"margins": [0.5, 0.9], "weights": [0.5, float("nan")]}, "weights"),
    ("mml", {"pos_weight": -1.0}, "pos_weight"),
    ("mml", {"neg_weight": -1.0}, "neg_weight"),
    ("mml", {"neg_weight": "700"}, "neg_weight"),
    ("ccl", {"margin": 1.5}, "margin"),
    ("ccl", {"margin": -1.01}, "margin"),
    ("ccl", {"neg_weight": -150}, "neg_weight"),
    ("hinge", {"margin": 1.2}, "margin"),
    ("bsl", {"tau1": 0.0}, "tau1"),
    ("bsl", {"tau2": -1.0}, "tau2"),
    ("bsl", {"mode": "single"}, "mode"),
    ("ssm", {"tau": 0.0}, "tau"),
    ("ssm", {"tau": -0.1}, "tau"),
    ("infonce_plus", {"tau": 0.0}, "tau"),
    ("infonce_plus", {"lam": 0.0}, "lam"),
    ("infonce_plus", {"eps": -0.1}, "eps"),
    ("debiased_infonce", {"tau": 0.0}, "tau"),
    ("debiased_infonce", {"tau_plus": 1.0}, "tau_plus"),
    ("debiased_infonce", {"tau_plus": -0.1}, "tau_plus"),
    ("debiased_ccl", {"tau_plus": 1.0}, "tau_plus"),
    ("debiased_ccl", {"margin": 2.0}, "margin"),
    ("debiased_ccl", {"neg_weight": -1.0}, "neg_weight"),
]


@pytest.mark.parametrize("name,hp,param", BAD)
def test_bad_hyperparameters_raise(name, hp, param):
    with pytest.raises(ValueError, match=param):
        get_loss(name, **hp)


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match="known losses: mml, ccl, bpr"):
        get_loss("mmcl")


def test_missing_hyperparameters_without_defaults():
    with pytest.raises(ValueError, match="missing hyperparameter.*pos_weight, neg_weight"):
        get_loss("mml", use_defaults=False, margins=[0.9], weights=[1.0])
    with pytest.raises(ValueError, match="missing hyperparameter.*tau"):
        get_loss("ssm", use_defaults=False)
    # all given: fine, and normalised to floats / tuples
    loss = get_loss(
        "mml",
        use_defaults=False,
        margins=np.array([0.5, 0.9]),
        weights=[1, 2],
        pos_weight=1,
        neg_weight=10,
    )
    assert loss.hp == {
        "margins": (0.5, 0.9),
        "weights": (1.0, 2.0),
        "pos_weight": 1.0,
        "neg_weight": 10.0,
    }


def test_defaults_are_the_gowalla_paper_values():
    assert get_loss("mml").hp == {
        "margins": (0.7, 0.8, 0.9),
        "weights": (0.10, 0.15, 0.75),
        "pos_weight": 1.0,
        "neg_weight": 700.0,
    }
    assert get_loss("ccl").hp == {"margin": 0.9, "neg_weight": 150.0}
    assert get_loss("bsl").hp == {"tau1": 0.08, "tau2": 1.22, "mode": "multi"}
    assert get_loss("hinge").hp == {"margin": 0.9}


def test_bad_inputs_raise(batch):
    pos, neg, users = batch
    loss = get_loss("ccl")
    with pytest.raises(ValueError, match="pos must have shape"):
        loss(pos[:, None], neg)
    with pytest.raises(ValueError, match="neg must have shape"):
        loss(pos, neg[:3])
    with pytest.raises(ValueError, match="N >= 1"):
        loss(pos, neg[:, :0])
    with pytest.raises(ValueError, match="floating point"):
        loss(pos.long(), neg)
    with pytest.raises(ValueError, match="users"):
        get_loss("bsl")(pos, neg)  # multi without users
    with pytest.raises(ValueError, match="users"):
        get_loss("bsl")(pos, neg, users[:3])
    # the other losses ignore users
    assert torch.equal(loss(pos, neg, users), loss(pos, neg))


# ------------------------------------------------------------------ margin geometry (mmlrepro.geometry.penalty)


def test_penalty_curve_hand():
    # margins [0.7, 0.8, 0.9], weights [0.1, 0.15, 0.75], w_neg 700, N 100 → scale 7
    s = np.array([0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0])
    pen, slope = penalty_curve(
        s, [0.7, 0.8, 0.9], [0.1, 0.15, 0.75], neg_weight=700, n_negatives=100
    )
    assert isinstance(pen, np.ndarray) and isinstance(slope, np.ndarray)
    # slope: 0 up to 0.7 (strict: left slope at the kink), 7·0.1 on (0.7, 0.8],
    #        7·0.25 on (0.8, 0.9], 7·1.0 above 0.9
    np.testing.assert_allclose(slope, [0, 0, 0.7, 0.7, 1.75, 1.75, 7.0, 7.0], atol=1e-12)
    # penalty: 0.75 → 7·0.1·0.05 = 0.035; 0.8 → 7·0.1·0.1 = 0.07;
    #          0.85 → 7·(0.1·0.15 + 0.15·0.05) = 0.1575; 0.9 → 7·(0.02 + 0.015) = 0.245
    #          0.95 → 7·(0.025 + 0.0225 + 0.0375) = 0.595; 1.0 → 7·(0.03 + 0.03 + 0.075) = 0.945
    np.testing.assert_allclose(pen, [0, 0, 0.035, 0.07, 0.1575, 0.245, 0.595, 0.945], atol=1e-12)
    # CCL is one margin: slope w/N above m, 0 below
    pen, slope = penalty_curve(torch.tensor([0.85, 0.95], dtype=F64), [0.9], [1.0], 150, 100)
    assert torch.allclose(slope, t([0.0, 1.5])) and torch.allclose(pen, t([0.0, 0.075]))


def test_penalty_curve_matches_mml_and_autograd(batch):
    pos, neg, _ = batch
    s = neg.clone().requires_grad_()
    pen, slope = penalty_curve(s, GOWALLA_MML["margins"], GOWALLA_MML["weights"], 700.0, 5)
    # Σ over negatives of the per-negative penalty is MML's negative term
    full = get_loss("mml", **GOWALLA_MML)(pos, neg)
    pos_part = torch.relu(1 - pos).mean()
    assert torch.allclose(pen.sum(-1).mean() + pos_part, full, rtol=1e-14)
    (g,) = torch.autograd.grad(pen.sum(), [s])
    assert torch.allclose(g, slope, rtol=0, atol=1e-14)


def test_penalty_curve_validates():
    with pytest.raises(ValueError, match="margins"):
        penalty_curve(np.zeros(3), [0.9, 0.7], [1, 1])
    with pytest.raises(ValueError, match="n_negatives"):
        penalty_curve(np.zeros(3), [0.9], [1], n_negatives=0)
    with pytest.raises(ValueError, match="neg_weight"):
        penalty_curve(np.zeros(3), [0.9], [1], neg_weight=-1)


def test_active_negatives():
    neg = t([[0.65, 0.7, 0.75, 0.95], [-1.0, 0.85, 1.2, 0.0]])
    mask, weight = active_negatives(neg, [0.7, 0.8, 0.9], [0.1, 0.15, 0.75])
    assert mask.tolist() == [[False, False, True, True], [False, True, True, False]]
    assert torch.allclose(weight, t([[0, 0, 0.1, 1.0], [0, 0.25, 1.0, 0]]))
    # share of negatives with a non-zero gradient: 4 of 8
    assert mask.double().mean().item() == 0.5
    # without weights: how many margins each negative passed
    _, count = active_negatives(neg, [0.7, 0.8, 0.9])
    assert count.tolist() == [[0, 0, 1, 3], [0, 2, 3, 0]]
