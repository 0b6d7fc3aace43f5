"""The compiled kernels (mmlrepro.kernels, issue 37) against the PyTorch paths.

Scores, losses and every gradient of the two paths, in float64 and float32, for MF and SimpleX,
several N (more negatives than items, so rows repeat), with dropout, for every loss family;
the exact step over several steps; the trainer; the fallback where the kernel cannot be built.
MML's margin penalty: the compiled one gives the loop's bits, forward, backward and in a run.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import mmlrepro.kernels as kernels
import mmlrepro.losses as losses
import mmlrepro.models as models
from mmlrepro.config import RunConfig
from mmlrepro.data import synthetic
from mmlrepro.losses import LOSSES, get_loss
from mmlrepro.models import gathered_cosine
from mmlrepro.step import ExactStep, batch_loss
from mmlrepro.train import build_model, train

# |compiled − pytorch| <= RTOL·|pytorch| + ATOL·max|pytorch| per dtype: the paths sum in
# different orders (the kernel: 16 lanes and a tree, rows grouped; PyTorch: MKL), nothing else.
TOL = {torch.float64: (1e-12, 1e-13), torch.float32: (2e-5, 2e-6)}
# after Adam steps, which divide each gradient element by its own scale, a rounding gap in an
# element near 0 grows (measured: 7e-14 of the scale in float64, 2.4e-5 in float32)
STEP_TOL = {torch.float64: (1e-9, 1e-11), torch.float32: (1e-4, 1e-4)}


@pytest.fixture(scope="module")
def kernel():
    k = kernels.compiled_kernels()
    if k is None:   # skipped where the fallback is meant to apply, an error where it built not
        if os.environ.get(kernels.ENV_SWITCH) == "0":
            pytest.skip(f"{kernels.ENV_SWITCH}=0")
        if kernels.toolchain_missing():
            pytest.skip(f"no kernel here: {kernels.toolchain_missing()}")
        pytest.fail("the compiled kernel did not build here (the notice above says why)")
    return k


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, tol=TOL) -> None:
    rtol, atol = tol[dtype]
    got, want = got.to_dense(), want.to_dense()
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * float(want.abs().max()) + 1e-300)


def scores_and_grads(u, table, idx, weights, compiled: bool):
    u = u.detach().clone().requires_grad_()
    table = table.detach().clone().requires_grad_()
    s = gathered_cosine(u, table, idx, sparse_grad=True, compiled=compiled)
    return (s.detach(), *torch.autograd.grad((s * weights).sum(), (u, table)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("b, k, n, d", [(6, 5, 10, 8), (4, 1, 3, 64), (9, 33, 20, 70),
                                        (3, 200, 50, 5), (1, 7, 1, 16)])
def test_kernel_equals_pytorch_path(kernel, dtype, b, k, n, d):
    """Values and both gradients, with rows repeated (within a user and across users) and a zero
    row (the eps clamp), against the PyTorch path and the textbook normalise-then-bmm."""
    gen = torch.Generator().manual_seed(b * 1000 + k)
    u = torch.randn(b, d, generator=gen, dtype=dtype)
    table = torch.randn(n, d, generator=gen, dtype=dtype)
    table[0] = 0.0
    idx = torch.randint(0, n, (b, k), generator=gen)
    idx[0, : (k + 1) // 2] = 0
    idx[-1, :] = n - 1
    weights = torch.randn(b, k, generator=gen, dtype=dtype)
    got = scores_and_grads(u, table, idx, weights, compiled=True)
    want = scores_and_grads(u, table, idx, weights, compiled=False)
    assert not got[2].is_sparse and want[2].is_sparse   # the kernel's table gradient is dense
    for a, w in zip(got, want, strict=True):
        assert_close(a, w, dtype)
    textbook = torch.bmm(F.normalize(table[idx], dim=-1), u.unsqueeze(-1)).squeeze(-1)
    assert_close(got[0], textbook, dtype)


def test_kernel_passes_gradcheck(kernel):
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(4, 5, dtype=torch.double, generator=gen, requires_grad=True)
    table = torch.randn(7, 5, dtype=torch.double, generator=gen, requires_grad=True)
    idx = torch.randint(0, 7, (4, 9), generator=gen)
    assert torch.autograd.gradcheck(lambda a, t: gathered_cosine(a, t, idx), (u, table))


def test_kernel_is_the_same_at_any_thread_count(kernel):
    """Every sum runs in one order whatever the threads: bit-identical at 1 and 2 threads."""
    gen = torch.Generator().manual_seed(3)
    u, table = torch.randn(64, 32, generator=gen), torch.randn(500, 32, generator=gen)
    idx = torch.randint(0, 500, (64, 101), generator=gen)
    weights = torch.randn(64, 101, generator=gen)
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2):
            torch.set_num_threads(t)
            results.append(scores_and_grads(u, table, idx, weights, compiled=True))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_kernel_refuses_an_index_out_of_range(kernel):
    with pytest.raises(RuntimeError, match="out of range"):
        gathered_cosine(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([[0, 5], [1, 2]]))
    with pytest.raises(RuntimeError, match="out of range"):
        gathered_cosine(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([[0, -1], [1, 2]]))


MODELS = {
    "mf": {},
    "simplex": {"aggregator": "attention", "gate": 0.8, "separate_history_table": True},
    # the history shares item_emb: its sparse rows and the kernel's dense gradient add up
    "simplex-shared": {"aggregator": "mean", "gate": 0.5, "separate_history_table": False},
}


def model_pair(kind: str, dtype: torch.dtype, dataset, dropout: float):
    config = RunConfig(dataset="synthetic", model=kind.split("-")[0], loss="bpr",
                       model_params=MODELS[kind], dropout=dropout, device="cpu")
    torch.manual_seed(0)
    compiled = build_model(config, dataset).to(dtype).train()
    plain = build_model(config, dataset).to(dtype).train()
    plain.load_state_dict(compiled.state_dict())
    plain.compiled_scores = False
    for m in (compiled, plain):
        m.sparse_grad = True   # as ExactStep sets it
    return compiled, plain


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("n_neg", [1, 10, 70])
def test_models_and_every_loss_family_agree(kernel, kind, dtype, n_neg):
    """MF and SimpleX, dropout 0.3 (the same mask on both sides), N up to more than the 60
    items: the loss of every family and the gradient of every parameter."""
    dataset = synthetic(40, 60, seed=4)
    compiled, plain = model_pair(kind, dtype, dataset, dropout=0.3)
    gen = torch.Generator().manual_seed(n_neg)
    users = torch.randint(0, 40, (16,), generator=gen)
    pos = torch.randint(0, 60, (16,), generator=gen)
    neg = torch.randint(0, 60, (16, n_neg), generator=gen)
    neg[0, :] = pos[0]                                   # a positive drawn as a negative
    config = RunConfig(dataset="synthetic", loss="bpr", reg_form="batch", reg_lambda=1e-3)
    for name in LOSSES:
        loss_fn = get_loss(name)
        losses, grads = [], []
        for m in (compiled, plain):
            torch.manual_seed(5)                         # the same dropout mask
            loss = batch_loss(m, loss_fn, config, users, pos, neg)
            losses.append(loss.detach())
            grads.append(torch.autograd.grad(loss, list(m.parameters()), allow_unused=True))
        assert_close(losses[0], losses[1], dtype)
        for a, b in zip(*grads, strict=True):
            if a is None or b is None:
                assert a is None and b is None
            else:
                assert_close(a, b, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["mf", "simplex"])
def test_exact_step_with_the_kernel_equals_the_pytorch_step(kernel, kind, dtype):
    """Five ExactSteps (λ 1e-2, clip 10) from one state: the same parameters after each."""
    dataset = synthetic(50, 80, seed=2)
    compiled, plain = model_pair(kind, dtype, dataset, dropout=0.1)
    config = RunConfig(dataset="synthetic", loss="mml", reg_lambda=1e-2)
    loss_fn = get_loss("mml")
    steps = [ExactStep(m, 1e-2, 1e-2, 10.0, torch.device("cpu")) for m in (compiled, plain)]
    gen = torch.Generator().manual_seed(9)
    for _ in range(5):
        users = torch.randint(0, 50, (24,), generator=gen)
        pos = torch.randint(0, 80, (24,), generator=gen)
        neg = torch.randint(0, 80, (24, 100), generator=gen)
        for m, step in zip((compiled, plain), steps, strict=True):
            torch.manual_seed(1)
            step(batch_loss(m, loss_fn, config, users, pos, neg))
        for p, q in zip(compiled.parameters(), plain.parameters(), strict=True):
            assert_close(p.detach(), q.detach(), dtype, STEP_TOL)


def test_the_trainer_uses_the_kernel_and_ends_where_the_pytorch_path_does(kernel, tmp_path,
                                                                          monkeypatch):
    config = RunConfig(dataset="synthetic:300:400", loss="mml", n_negatives=50, batch_size=128,
                       lr=1e-2, epochs=2, reg_lambda=1e-6, device="cpu", seed=7)
    calls = []
    real = models._KernelCosine.apply
    monkeypatch.setattr(models._KernelCosine, "apply", lambda *a: calls.append(1) or real(*a))
    with_kernel = train(config, checkpoint_dir=tmp_path / "a", log=None)
    assert calls, "the trainer did not score through the kernel"
    monkeypatch.setattr(models, "compiled_kernels", lambda: None)
    without = train(config, checkpoint_dir=tmp_path / "b", log=None)
    for a, b in zip(with_kernel.history, without.history, strict=True):
        for key in ("loss", "recall@20", "ndcg@20"):
            assert a[key] == pytest.approx(b[key], rel=1e-3)


def test_the_switch_turns_the_kernel_off_without_a_notice(monkeypatch, capsys):
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert kernels.load_kernels() is None
    assert capsys.readouterr().err == ""


def test_a_failed_build_falls_back_with_one_line(monkeypatch, capsys, tmp_path):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension: c++ exited with 1")

    monkeypatch.delenv(kernels.ENV_SWITCH, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", broken)
    assert kernels.load_kernels() is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("mmlrepro: compiled kernels not used (build failed")
    assert "c++ exited with 1" in lines[-1] and len(lines) == 2   # "compiling ...", then why


def test_no_compiler_falls_back_with_one_line(monkeypatch, capsys):
    monkeypatch.delenv(kernels.ENV_SWITCH, raising=False)
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert kernels.load_kernels() is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no C++ compiler" in err[0]


def test_without_the_kernel_the_pytorch_path_scores(monkeypatch):
    """No kernel (or a tensor off the CPU): the PyTorch function, its sparse gradient kept."""
    monkeypatch.setattr(models, "compiled_kernels", lambda: None)
    u = torch.randn(3, 4, requires_grad=True)
    table = torch.randn(6, 4, requires_grad=True)
    s = gathered_cosine(u, table, torch.randint(0, 6, (3, 5)), sparse_grad=True)
    s.sum().backward()
    assert table.grad.is_sparse
    meta = torch.empty(3, 4, device="meta")
    assert models._compiled_kernel(meta, meta, meta.long()) is None


def test_the_build_is_keyed_by_source_flags_torch_and_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = kernels.build_dir()
    assert first.parent == tmp_path / "mmlrepro" / "kernels"
    monkeypatch.setattr(kernels, "FLAGS", [*kernels.FLAGS, "-DX"])
    assert kernels.build_dir() != first
    monkeypatch.setattr(kernels, "_cpu_id", lambda: "another cpu")
    assert kernels.build_dir() != first


def test_the_kernel_scores_only_batches_that_fill_the_table(kernel):
    """Below KERNEL_MIN_FILL pairs per row the PyTorch path (sparse gradient) is cheaper and used;
    at or above it the kernel (dense gradient)."""
    n = 40
    table = torch.randn(n, 8, requires_grad=True)
    for k, dense in ((4, False), (5, True)):    # 4·4 = 16 < 0.5·40 <= 4·5 = 20
        s = gathered_cosine(torch.randn(4, 8), table, torch.randint(0, n, (4, k)), sparse_grad=True)
        (grad,) = torch.autograd.grad(s.sum(), (table,))
        assert 4 * k >= models.KERNEL_MIN_FILL * n if dense else 4 * k < models.KERNEL_MIN_FILL * n
        assert grad.is_sparse is not dense


def test_a_run_names_the_scores_it_trained_with(kernel, tmp_path):
    config = RunConfig(dataset="synthetic:300:400", loss="ccl", n_negatives=20, batch_size=128,
                       lr=1e-2, epochs=1, device="cpu", seed=7)
    few = config.replace(n_negatives=1, batch_size=64)   # 64·2 pairs < 0.5·400: below the fill
    got = {(c.n_negatives, flag): train(c, checkpoint_dir=tmp_path, log=None,
                                        compiled_scores=flag).provenance["negatives_scores"]
           for c in (config, few) for flag in (True, False)}
    assert got == {(20, True): "compiled kernel", (20, False): "pytorch",
                   (1, True): "pytorch", (1, False): "pytorch"}


def test_verify_trains_a_run_stored_before_the_kernel_with_the_pytorch_path(kernel, tmp_path,
                                                                              monkeypatch):
    """A record without ``negatives_scores`` (stored before issue 37) trained with the PyTorch
    path: verify uses that path (the kernel is never called) and comes back identical."""
    import json

    from mmlrepro.runner import run
    from mmlrepro.verify import verify

    config = RunConfig(dataset="synthetic:300:400", loss="ccl", n_negatives=20, batch_size=128,
                       lr=1e-2, epochs=2, device="cpu", seed=7)
    monkeypatch.setattr(models, "compiled_kernels", lambda: None)
    key = run(config, results_dir=tmp_path / "store", checkpoint_dir=tmp_path / "ckpt", log=None).key
    monkeypatch.undo()
    path = tmp_path / "store" / "runs" / f"{key}.json"
    record = json.loads(path.read_text())
    assert record["provenance"].pop("negatives_scores") == "pytorch"
    path.write_text(json.dumps(record))
    calls = []
    real = models._KernelCosine.apply
    monkeypatch.setattr(models._KernelCosine, "apply", lambda *a: calls.append(1) or real(*a))
    (result,) = verify([key], epochs=2, results_dir=tmp_path / "store", log=lambda line: None)
    assert result.outcome == "identical" and not calls


# --------------------------------------------------------------------------------------------
# MML's margin penalty: the compiled kernel gives the PyTorch loop's bits, forward and backward
# --------------------------------------------------------------------------------------------

PAPER_MARGINS = [([0.9], [1.0]), ([0.7, 0.9], [0.3, 0.7]), ([0.7, 0.8, 0.9], [0.10, 0.15, 0.75]),
                 ([0.6, 0.7, 0.8, 0.9], [0.05, 0.15, 0.2, 0.6])]


def penalty_loss_and_grad(scores: torch.Tensor, margins, weights, penalty) -> tuple[torch.Tensor, ...]:
    """MML's negative term as the loss builds it on the negatives' columns of a batch's scores
    (a strided view: row mean, weight, batch mean) and ∂/∂scores."""
    scores = scores.detach().clone().requires_grad_()
    s = scores[:, 1:]
    assert not s.is_contiguous()
    values = penalty(s, margins, weights)
    loss = (150.0 * values.mean(dim=-1)).mean()
    loss.backward()
    return values.detach(), loss.detach(), scores.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("margins, weights", PAPER_MARGINS)
@pytest.mark.parametrize("threads", [1, 2])
def test_the_compiled_margin_penalty_gives_the_loops_bits(kernel, dtype, margins, weights, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(len(margins) + threads)
        s = torch.rand(64, 301, generator=gen, dtype=dtype) * 2 - 1   # [s⁺, 300 negatives] a row
        s[0, 1:7] = torch.tensor([0.6, 0.7, 0.8, 0.9, 1.0, -1.0], dtype=dtype)   # on the margins
        s[1, 1:5] = torch.tensor(margins[:1] * 4, dtype=dtype) + torch.finfo(dtype).eps
        assert s.numel() >= losses.COMPILED_PENALTY_MIN
        calls = []
        real = losses._CompiledMarginPenalty.apply
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(losses._CompiledMarginPenalty, "apply", lambda *a: calls.append(1) or real(*a))
            got = penalty_loss_and_grad(s, margins, weights, losses.margin_penalty)
        assert calls, "the compiled penalty was not used"
        want = penalty_loss_and_grad(s, margins, weights, losses.margin_penalty_loop)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    finally:
        torch.set_num_threads(before)


def test_the_compiled_margin_penalty_keeps_nan_and_a_loss_that_needs_no_grad(kernel):
    s = torch.full((8, 512), 0.95)
    s[3, 7] = float("nan")
    got = losses.margin_penalty(s, [0.7, 0.9], [0.3, 0.7])
    want = losses.margin_penalty_loop(s, [0.7, 0.9], [0.3, 0.7])
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan().sum() == 1
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def test_small_batches_and_other_tensors_take_the_loop(monkeypatch):
    monkeypatch.setattr(losses, "compiled_kernels", lambda: pytest.fail("the kernels were asked for"))
    small = torch.rand(4, losses.COMPILED_PENALTY_MIN // 4 - 1)
    strided = torch.rand(losses.COMPILED_PENALTY_MIN, 2).t()   # stride 2 along a row
    for s in (small, strided, torch.rand(64, 64, dtype=torch.float16)):
        assert torch.equal(losses.margin_penalty(s, [0.9], [1.0]), losses.margin_penalty_loop(s, [0.9], [1.0]))


def test_without_the_kernels_the_loop_computes_the_penalty(monkeypatch):
    monkeypatch.setattr(losses, "compiled_kernels", lambda: None)
    s = torch.rand(64, 300)
    assert torch.equal(losses.margin_penalty(s, [0.7, 0.9], [0.3, 0.7]),
                       losses.margin_penalty_loop(s, [0.7, 0.9], [0.3, 0.7]))


def test_an_mml_run_is_the_same_bits_with_the_compiled_penalty_or_the_loop(kernel, tmp_path,
                                                                           monkeypatch):
    config = RunConfig(dataset="synthetic:300:400", loss="mml", n_negatives=50, batch_size=128,
                       lr=1e-2, epochs=2, reg_lambda=1e-6, device="cpu", seed=7,
                       loss_params={"margins": [0.6, 0.7, 0.8, 0.9], "weights": [0.05, 0.15, 0.2, 0.6]})
    compiled = train(config, checkpoint_dir=tmp_path / "a", log=None)
    monkeypatch.setattr(losses, "compiled_kernels", lambda: None)
    loop = train(config, checkpoint_dir=tmp_path / "b", log=None)
    def computed(epoch: dict) -> dict:
        return {k: v for k, v in epoch.items() if k not in ("train_s", "eval_s")}

    assert [computed(h) for h in compiled.history] == [computed(h) for h in loop.history]
    assert computed(compiled.best) == computed(loop.best)
