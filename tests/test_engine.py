"""The ensemble engine on real data (scikit-learn's digits)."""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from imod.engine import (
    ModuleMembers,
    OptimizerSpec,
    Placement,
    Recorder,
    Recording,
    StackedMLP,
    Task,
    Training,
    balanced_mask,
    bernoulli_mask,
    correctness,
    full_mask,
    margin,
    per_example_loss,
)
from imod.engine import train_ensemble as engine_train
from imod.engine.members import ACTIVATIONS
from imod.engine.reference import train_one_by_one

# The CPU, and a CUDA device where there is one (skipped without).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


_TASK = ("mask", "n_members", "views", "loss", "first_member")
_TRAINING = ("optimizer", "epochs", "batch_size", "random_state", "init", "init_scale", "trim")
_PLACEMENT = ("device", "precision", "compile", "chunk_size", "eval_batch_size", "progress")
_RECORDING = {"recorders": "recorders", "record_every": "every", "record_initial": "initial",
              "keep_snapshots": "keep_snapshots"}


def train_ensemble(model, X, y=None, **kw):
    """The engine's four records from one set of keywords (the tests vary them freely)."""
    def pick(names):
        return {k: kw.pop(k) for k in names if k in kw}

    task = Task(model, X, y, **pick(_TASK))
    training = Training(**pick(_TRAINING))
    placement = Placement(**pick(_PLACEMENT))
    recording = Recording(**{_RECORDING[k]: v for k, v in pick(_RECORDING).items()})
    assert not kw, kw
    return engine_train(task, training, placement, recording)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:300], y[:300]


def _assert_same_params(engine_params, models, atol=2e-5):
    for k, model in enumerate(models):
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(
                engine_params[name][k].numpy(),
                value.detach().numpy(),
                atol=atol,
                rtol=1e-4,
                err_msg=f"member {k} parameter {name}",
            )


# ----------------------------------------------------------------------------- masks


def test_masks_have_the_promised_structure():
    assert full_mask(3, 5).all()
    b = bernoulli_mask(200, 100, 0.3, random_state=1)
    assert abs(b.mean() - 0.3) < 0.02 and b.any(axis=1).all()
    m = balanced_mask(20, 50, 0.7, random_state=2)
    assert (m.sum(axis=0) == 14).all()
    assert not np.array_equal(m, balanced_mask(20, 50, 0.7, random_state=3))
    np.testing.assert_array_equal(m, balanced_mask(20, 50, 0.7, random_state=2))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: full_mask(0, 5), "n_members"),
        (lambda: bernoulli_mask(3, 5, 1.5), "rate"),
        (lambda: balanced_mask(3, 5, 0.0), "rate"),
        (lambda: balanced_mask(2, 100, 0.2), "round"),
    ],
)
def test_mask_helpers_reject_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------- equivalence


OPTIMIZERS = [
    "adam",
    OptimizerSpec("sgd", lr=0.05, momentum=0.9),
    OptimizerSpec("adamw", weight_decay=0.1),
]


@pytest.mark.parametrize("uneven", [True, False], ids=["uneven-masks", "full-masks"])
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=["adam", "sgd-momentum", "adamw"])
def test_fast_path_equals_one_by_one_loop(digits, opt, uneven):
    X, y = digits
    mlp = StackedMLP((64, 16, 10))
    # Members with very different subset sizes (a tiny one skips many batches,
    # which exercises the per-member optimizer formula), or all data (torch's
    # fused/multi-tensor optimizer).
    rng = np.random.default_rng(0)
    rates = np.array([1.0, 0.7, 0.3, 0.05]) if uneven else np.ones(4)
    mask = rng.random((4, len(X))) < rates[:, None]
    res = train_ensemble(
        mlp,
        X,
        y,
        mask=mask,
        loss="cross_entropy",
        optimizer=opt,
        epochs=3,
        batch_size=32,
        random_state=5,
        device="cpu",
    )
    models = train_one_by_one(
        mlp,
        mlp.init(5, range(4)),
        X,
        y,
        mask=mask,
        loss="cross_entropy",
        optimizer=opt,
        epochs=3,
        batch_size=32,
        random_state=5,
    )
    _assert_same_params(res.params, models)


def test_l1_loss_equals_the_loop_and_differs_from_mse(digits):
    X, _ = digits
    mlp = StackedMLP((64, 8, 64))
    kw = dict(mask=bernoulli_mask(3, len(X), 0.6, random_state=1), epochs=2, batch_size=32,
              random_state=3, trim=0.2, loss="l1")
    res = train_ensemble(mlp, X, device="cpu", **kw)
    # The L1 gradient is a sign: a residual within rounding of zero (batched vs looped
    # sums) can flip one coordinate's step, which Adam scales to ~lr. Hence 1e-4.
    models = train_one_by_one(mlp, mlp.init(3, range(3)), X, **kw)
    _assert_same_params(res.params, models, atol=1e-4)
    squared = train_ensemble(mlp, X, device="cpu", **{**kw, "loss": "mse"})
    assert not torch.allclose(squared.params["0.weight"], res.params["0.weight"])


@pytest.mark.parametrize("subsets", [True, False])
def test_trimmed_loss_equals_a_loop_that_drops_the_largest_losses(digits, subsets):
    X, _ = digits
    mlp = StackedMLP((64, 8, 64))
    # Uneven rows per member and batch (ranked per member), or all rows (one top-k).
    mask = bernoulli_mask(3, len(X), 0.6, random_state=2) if subsets else full_mask(3, len(X))
    kw = dict(mask=mask, epochs=2, batch_size=32, random_state=7, trim=0.25)
    res = train_ensemble(mlp, X, device="cpu", **kw)
    models = train_one_by_one(mlp, mlp.init(7, range(3)), X, **kw)
    _assert_same_params(res.params, models)
    plain = train_ensemble(mlp, X, device="cpu", **{**kw, "trim": 0.0})
    assert not torch.allclose(plain.params["0.weight"], res.params["0.weight"])


def test_trimmed_loss_leaves_outliers_unfitted(digits, one_thread):
    """Rows the network cannot fit early are dropped from every update, so after
    a long run they stay far worse reconstructed than without trimming."""
    X, _ = digits
    rng = np.random.default_rng(0)
    data = X.copy()
    out = rng.choice(len(X), 15, replace=False)
    data[out] = rng.uniform(0, 1, size=(15, 64)).astype(np.float32)  # 5% noise images
    rec = [Recorder("loss", per_example_loss("mse"), reduce="last")]
    gap = {}
    for trim in (0.0, 0.2):
        res = train_ensemble(StackedMLP((64, 32, 64)), data, n_members=4, epochs=60,
                             batch_size=32, random_state=0, trim=trim, recorders=rec,
                             optimizer=OptimizerSpec("adam", lr=3e-3), device="cpu")
        loss = res.records["loss"].mean(axis=0)
        inlier = np.delete(loss, out)
        gap[trim] = np.median(loss[out]) / np.median(inlier)
    assert gap[0.2] > 2 * gap[0.0]


def test_views_train_each_member_on_its_own_version(digits):
    X, _ = digits
    versions = np.stack([X, 1.0 - X, 2.0 * X])  # V=3 scalings of the same rows
    views = np.array([2, 0, 1, 2, 0])
    rec = [Recorder("loss", per_example_loss("mse"))]
    kw = dict(epochs=2, batch_size=32, random_state=3, recorders=rec, device="cpu")
    joint = train_ensemble(StackedMLP((64, 8, 64)), versions, views=views, trim=0.2, **kw)
    assert joint.records["loss"].shape == (2, 5, len(X))
    for v in range(3):
        alone = train_ensemble(StackedMLP((64, 8, 64)), versions[v], n_members=5, trim=0.2, **kw)
        k = views == v  # member k is seeded by its index, whatever it reads
        np.testing.assert_allclose(joint.records["loss"][:, k], alone.records["loss"][:, k],
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(joint.params["2.weight"][k], alone.params["2.weight"][k])


def test_views_with_targets_train_each_member_on_its_own_pairs(digits):
    """Denoising members: each version's inputs (here a noisy copy) with its own targets
    (the clean rows), members on subsets, recorded on clean rows; the same numbers as one
    run per version."""
    X, _ = digits
    rng = np.random.default_rng(0)
    clean = np.stack([X, 1.0 - X]).astype(np.float32)  # V=2 scalings
    noisy = clean + rng.normal(0, 0.3, clean.shape).astype(np.float32)
    views = np.array([1, 0, 0, 1])
    mask = balanced_mask(4, len(X), 0.7, random_state=2)
    rec = [Recorder("loss", per_example_loss("l1"), X=clean[:, :50], y=clean[:, :50])]
    kw = dict(epochs=2, batch_size=32, random_state=3, device="cpu", loss="l1", mask=mask)
    joint = train_ensemble(StackedMLP((64, 8, 64)), noisy, clean, views=views,
                           recorders=rec, **kw)
    assert joint.records["loss"].shape == (2, 4, 50)
    for v in range(2):
        alone = train_ensemble(StackedMLP((64, 8, 64)), noisy[v], clean[v], **kw,
                               recorders=[Recorder("loss", per_example_loss("l1"),
                                                   X=clean[v, :50], y=clean[v, :50])])
        k = views == v
        np.testing.assert_allclose(joint.records["loss"][:, k], alone.records["loss"][:, k],
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(joint.params["2.weight"][k], alone.params["2.weight"][k])
    with pytest.raises(ValueError, match=r"y must have shape \(V, n, d_out\)"):
        train_ensemble(StackedMLP((64, 8, 64)), noisy, clean[0], views=views, **kw)


def test_general_path_equals_fast_path_and_loop(digits):
    X, y = digits
    mlp = StackedMLP((64, 16, 10))
    general = ModuleMembers(mlp.module)
    mask = balanced_mask(6, len(X), 0.5, random_state=1)
    kwargs = dict(mask=mask, loss="cross_entropy", epochs=2, batch_size=16, random_state=3)
    fast = train_ensemble(mlp, X, y, device="cpu", **kwargs)
    vmapped = train_ensemble(general, X, y, device="cpu", **kwargs)
    models = train_one_by_one(general, general.init(3, range(6)), X, y, **kwargs)
    _assert_same_params(vmapped.params, models)
    # Both paths start from nn.Linear's default distribution but draw it
    # differently, so compare what they learn rather than their weights.
    acc_fast = (fast.forward(X).argmax(-1) == torch.as_tensor(y)).float().mean()
    acc_vmap = (vmapped.forward(X).argmax(-1) == torch.as_tensor(y)).float().mean()
    assert abs(acc_fast - acc_vmap) < 0.1


def test_general_path_trains_a_convolutional_member(digits):
    X, y = digits

    def cnn() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, 8, 8)),
            torch.nn.Conv2d(1, 4, 3),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 6 * 6, 10),
        )

    res = train_ensemble(
        cnn,
        X,
        y,
        n_members=3,
        loss="cross_entropy",
        epochs=4,
        optimizer={"lr": 1e-2},
        recorders=[Recorder("acc", correctness, reduce="last")],
        device="cpu",
    )
    assert res.records["acc"].shape == (3, len(X))
    assert res.records["acc"].mean() > 0.8
    models = train_one_by_one(
        res.members,
        res.members.init(0, range(3)),
        X,
        y,
        loss="cross_entropy",
        epochs=4,
        optimizer={"lr": 1e-2},
    )
    _assert_same_params(res.params, models, atol=1e-4)


# ------------------------------------------------------------------ mask isolation


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_shared_and_own_batches_take_the_same_gradients_without_rebuilding_buffers(
        digits, activation):
    """A shared batch's first layer is one product for all members; its activation runs
    in place on that product, not on a per-member view of it, whose backward would
    rebuild the whole buffer (autograd's CopySlices: a zero fill and two copies an update,
    a third of a width-32 update's time). Gradients equal the own-rows path's."""
    X, _ = digits
    mlp = StackedMLP((64, 16, 16, 64), activation=activation)
    x = torch.as_tensor(X[:32])
    grads = []
    for inputs in (x, x.expand(3, -1, -1)):  # shared (B, d), own (K, B, d)
        params = {k: v.requires_grad_(True) for k, v in mlp.init(0, range(3)).items()}
        loss = (mlp.forward(params, inputs) - x).abs().sum()
        nodes, seen = [loss.grad_fn], set()
        while nodes:
            node = nodes.pop()
            if node is not None and node not in seen:
                seen.add(node)
                nodes += [f for f, _ in node.next_functions]
        assert "CopySlices" not in {type(n).__name__ for n in seen}
        grads.append(torch.autograd.grad(loss, list(params.values())))
    for shared, own in zip(*grads):
        torch.testing.assert_close(shared, own, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bias", [True, False])
def test_scoring_pass_with_folded_biases_equals_forward_plus_loss(digits, activation, bias):
    """The inference pass folds each bias into its product (a constant row of ones carried
    from layer to layer); that row must not pass through the activation, which leaves 1
    alone only for relu, leaky_relu and identity. Both losses, a sigmoid output."""
    from imod.engine.losses import get_loss

    X, _ = digits
    x = torch.as_tensor(X[:100])
    mlp = StackedMLP((64, 24, 8, 24, 64), activation=activation, output_activation="sigmoid",
                     bias=bias)
    params = mlp.init(0, range(5))
    with torch.no_grad():
        for loss in ("l1", "mse"):
            fast = mlp.reconstruction_losses(mlp.folded_weights(params), x.T.contiguous(), loss)
            torch.testing.assert_close(fast, get_loss(loss)(mlp.forward(params, x), x),
                                       rtol=1e-5, atol=1e-6)


def test_examples_outside_a_members_mask_never_reach_its_gradient(digits):
    X, y = digits
    mask = bernoulli_mask(3, len(X), 0.5, random_state=0)
    outside = ~mask[0]
    X2, y2 = X.copy(), y.copy()
    X2[outside] = np.random.default_rng(1).normal(scale=50.0, size=(outside.sum(), 64))
    y2[outside] = (y2[outside] + 3) % 10
    kwargs = dict(mask=mask, loss="cross_entropy", epochs=3, random_state=0, device="cpu")
    a = train_ensemble(StackedMLP((64, 8, 10)), X, y, **kwargs)
    b = train_ensemble(StackedMLP((64, 8, 10)), X2, y2, **kwargs)
    for name in a.params:
        torch.testing.assert_close(a.params[name][0], b.params[name][0], rtol=0, atol=1e-6)
        assert not torch.allclose(a.params[name][1:], b.params[name][1:])


# -------------------------------------------------------------------- determinism


def test_runs_are_deterministic_and_chunking_does_not_change_numbers(digits):
    X, y = digits
    mlp = StackedMLP((64, 8, 10))
    mask = balanced_mask(7, len(X), 0.7, random_state=0)
    rec = [Recorder("loss", per_example_loss("cross_entropy"))]
    kw = dict(mask=mask, loss="cross_entropy", epochs=2, recorders=rec, device="cpu")
    a = train_ensemble(mlp, X, y, random_state=11, **kw)
    b = train_ensemble(mlp, X, y, random_state=11, chunk_size=3, **kw)
    c = train_ensemble(mlp, X, y, random_state=12, **kw)
    assert b.chunk_size == 3
    for name in a.params:
        torch.testing.assert_close(a.params[name], b.params[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.records["loss"], b.records["loss"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a.params["0.weight"], c.params["0.weight"])


def test_a_chunk_with_no_rows_at_a_step_skips_it(digits):
    """Member 0 has every row (10 batches an epoch), the others half (5): in chunks of
    two, the second chunk has no row at steps 6-10. It skips them (this crashed the
    optimizer before) and every number is the one-chunk run's."""
    X, y = digits
    mask = np.zeros((4, len(X)), dtype=bool)
    mask[0], mask[1:, : len(X) // 2] = True, True
    rec = [Recorder("loss", per_example_loss("cross_entropy"))]
    kw = dict(mask=mask, loss="cross_entropy", epochs=2, batch_size=32, random_state=3,
              recorders=rec, device="cpu")
    a = train_ensemble(StackedMLP((64, 8, 10)), X, y, **kw)
    b = train_ensemble(StackedMLP((64, 8, 10)), X, y, chunk_size=2, **kw)
    assert b.chunk_size == 2
    for name in a.params:
        torch.testing.assert_close(a.params[name], b.params[name], rtol=0, atol=0)
    np.testing.assert_array_equal(a.records["loss"], b.records["loss"])


def test_members_trained_in_blocks_match_one_run(digits):
    X, y = digits
    mlp = StackedMLP((64, 8, 10))
    mask = balanced_mask(6, len(X), 0.5, random_state=0)
    kw = dict(loss="cross_entropy", epochs=2, random_state=4, device="cpu")
    whole = train_ensemble(mlp, X, y, mask=mask, **kw)
    tail = train_ensemble(mlp, X, y, mask=mask[4:], first_member=4, **kw)
    torch.testing.assert_close(whole.params["2.weight"][4:], tail.params["2.weight"])


# ---------------------------------------------------------------------- recorders


def test_recorders_shapes_schedules_and_reductions(digits):
    X, y = digits
    Xt, yt = X[:50], y[:50]
    recs = [
        Recorder("loss", per_example_loss("cross_entropy")),
        Recorder("acc_test", correctness, X=Xt, y=yt, reduce="last"),
        Recorder("margin_mean", margin, reduce="mean"),
    ]
    res = train_ensemble(
        StackedMLP((64, 8, 10)),
        X,
        y,
        n_members=4,
        loss="cross_entropy",
        epochs=3,
        batch_size=50,
        recorders=recs,
        record_every=3,
        record_initial=True,
        keep_snapshots=True,
        device="cpu",
    )
    # 300 rows / 50 = 6 updates per epoch, 18 in all: recordings at 0, 3, ..., 18.
    assert res.records["loss"].shape == (7, 4, 300)
    np.testing.assert_array_equal(res.record_updates, np.arange(0, 19, 3))
    assert res.record_epochs[-1] == pytest.approx(3.0)
    assert res.records["acc_test"].shape == (4, 50)
    assert res.records["margin_mean"].shape == (4, 300)
    assert len(res.snapshots) == 7
    # The loss recorded from the last snapshot is the loss of the final params.
    out = res.forward(X, params=res.snapshots[-1])
    final = torch.nn.functional.cross_entropy(
        out.reshape(-1, 10), torch.as_tensor(y).repeat(4), reduction="none"
    ).view(4, -1)
    np.testing.assert_allclose(res.records["loss"][-1], final.numpy(), rtol=1e-4, atol=1e-5)
    # Training lowers the loss of the examples it fits.
    assert res.records["loss"][-1].mean() < res.records["loss"][0].mean()


def test_autoencoder_recorder_sees_early_and_late_losses():
    X = load_digits().data[:200] / 16.0
    res = train_ensemble(
        StackedMLP((64, 16, 64), output_activation="sigmoid"),
        X,
        n_members=2,
        epochs=4,
        recorders=[Recorder("rec", per_example_loss("mse"))],
        device="cpu",
    )
    traj = res.records["rec"].mean(axis=(1, 2))
    assert traj.shape == (4,) and traj[-1] < traj[0]


# ------------------------------------------------------------------ initialization


def test_init_schemes_scale_orthogonal_and_hooks():
    mlp = StackedMLP((16, 16, 4))
    base = mlp.init(0, range(2))
    scaled = mlp.init(0, range(2), init_scale=0.1)
    torch.testing.assert_close(scaled["0.weight"], 0.1 * base["0.weight"])
    torch.testing.assert_close(scaled["0.bias"], base["0.bias"])
    ortho = mlp.init(0, range(2), init="orthogonal")
    w = ortho["0.weight"][0]
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    seen = []

    def hook(name, tensor, generator):
        seen.append(name)
        tensor.fill_(0.5)

    hooked = mlp.init(0, range(2), init=hook)
    assert (hooked["2.weight"] == 0.5).all() and len(seen) == 8


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_members=0), "K >= 1"),
        (dict(mask=np.ones((2, 5), bool)), "columns"),
        (dict(mask=np.zeros((2, 300), bool)), "no training examples"),
        (dict(n_members=2, optimizer="rmsprop"), "unknown optimizer"),
        (dict(n_members=2, loss="hinge"), "unknown loss"),
        (dict(n_members=2, init="xavier"), "unknown init"),
        (dict(n_members=2, init_scale=-1.0), "init_scale"),
        (dict(n_members=2, device="tpu"), "device"),
        (dict(n_members=2, chunk_size=0), "chunk_size"),
        (dict(n_members=2, record_every=0), "every must be"),
        (dict(), "n_members"),
        (dict(n_members=2, trim=1.0), "trim"),
        (dict(n_members=2, trim=-0.1), "trim"),
        (dict(views=[0, 0]), r"shape \(V, n, d\)"),
    ],
)
def test_bad_options_get_clear_errors(digits, kwargs, message):
    X, _ = digits
    with pytest.raises(ValueError, match=message):
        train_ensemble(StackedMLP((64, 4, 64)), X, **kwargs)


def test_bad_data_gets_clear_errors(digits):
    X, y = digits
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_ensemble(StackedMLP((64, 4, 64)), bad, n_members=1)
    with pytest.raises(ValueError, match="empty"):
        train_ensemble(StackedMLP((64, 4, 64)), X[:0], n_members=1)
    with pytest.raises(ValueError, match="y has"):
        train_ensemble(StackedMLP((64, 4, 10)), X, y[:10], n_members=1, loss="cross_entropy")
    with pytest.raises(ValueError, match="activation"):
        StackedMLP((64, 4), activation="swishy")
    versions = np.stack([X, X])
    with pytest.raises(ValueError, match=r"with views, y must have shape \(V, n, d_out\)"):
        train_ensemble(StackedMLP((64, 4, 10)), versions, y, views=[0, 1])  # y: one version
    with pytest.raises(ValueError, match="index the 2 versions"):
        train_ensemble(StackedMLP((64, 4, 64)), versions, views=[0, 2])
    with pytest.raises(ValueError, match="2 entries but there are 3 members"):
        train_ensemble(StackedMLP((64, 4, 64)), versions, views=[0, 1], n_members=3)
    with pytest.raises(ValueError, match=r"recorder 'r'.*\(V=2, m"):
        train_ensemble(StackedMLP((64, 4, 64)), versions, views=[0, 1],
                       recorders=[Recorder("r", per_example_loss("mse"), X=X)])


def test_bf16_precision_stays_close_to_fp32(digits):
    X, y = digits
    kw = dict(n_members=3, loss="cross_entropy", epochs=3, random_state=0, device="cpu")
    rec = [Recorder("loss", per_example_loss("cross_entropy"), reduce="last")]
    fp32 = train_ensemble(StackedMLP((64, 32, 10)), X, y, recorders=rec, **kw)
    bf16 = train_ensemble(StackedMLP((64, 32, 10)), X, y, recorders=rec, precision="bf16", **kw)
    a, b = fp32.records["loss"].ravel(), bf16.records["loss"].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.98
    with pytest.raises(ValueError, match="precision"):
        train_ensemble(StackedMLP((64, 4, 10)), X, y, precision="fp8", **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("subsets", [False, True])
def test_cuda_matches_cpu(digits, subsets):
    """The same members on both devices: shared batches, and own-row batches on subsets
    (members' step counts then differ: CUDA's compiled masked Adam, the CPU's per-member
    fused step). Exact float32 on CUDA ("ieee"): its default TF32 products are not."""
    X, y = digits
    kw = dict(loss="cross_entropy", epochs=2, random_state=0)
    if subsets:
        kw["mask"] = balanced_mask(4, len(X), 0.5, random_state=0)
    else:
        kw["n_members"] = 4
    cpu = train_ensemble(StackedMLP((64, 16, 10)), X, y, device="cpu", **kw)
    gpu = train_ensemble(StackedMLP((64, 16, 10)), X, y, device="cuda", precision="ieee", **kw)
    for name in cpu.params:
        torch.testing.assert_close(cpu.params[name], gpu.params[name], rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------ no host round trips


class _HostTrips:
    """Counts calls that bring device values to the host (or wait for them)."""

    METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "nonzero")

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.active = False
        for name in self.METHODS:
            self._wrap(monkeypatch, torch.Tensor, name)
        self._wrap(monkeypatch, torch, "nonzero")
        self._wrap(monkeypatch, torch, "masked_select")
        original_to = torch.Tensor.to

        def to(t, *args, **kwargs):
            places = (*args, kwargs.get("device"))
            target = [a for a in places if isinstance(a, (str, torch.device))]
            if self.active and any(torch.device(a).type == "cpu" for a in target):
                self.calls.append("to(cpu)")
            return original_to(t, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "to", to)
        original_getitem = torch.Tensor.__getitem__

        def getitem(t, index):
            parts = index if isinstance(index, tuple) else (index,)
            if self.active and any(
                isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts
            ):
                self.calls.append("boolean indexing")
            return original_getitem(t, index)

        monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)

    def _wrap(self, monkeypatch, owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if self.active:
                self.calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    def watch_update_loop(self, monkeypatch):
        """Count only inside ChunkRun.update_loop (argument checks and results are outside)."""
        from imod.engine.loop import ChunkRun

        original = ChunkRun.update_loop

        def watched(run, *args, **kwargs):
            self.active = True
            try:
                if run.device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("error")
                return original(run, *args, **kwargs)
            finally:
                if run.device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
                self.active = False

        monkeypatch.setattr(ChunkRun, "update_loop", watched)


def _busy_run(X, y, device, extra_recorder=None, optimizer="adam"):
    """Uneven masks (members skip batches), trimming, a padded last batch, every
    recorder reduction, recordings every 3 updates and snapshots."""
    rng = np.random.default_rng(0)
    mask = rng.random((5, len(X))) < np.array([1.0, 0.7, 0.3, 0.05, 1.0])[:, None]
    mask[:, 0] = True
    recs = [
        Recorder("loss", per_example_loss("cross_entropy")),
        Recorder("acc", correctness, X=X[:40], y=y[:40], reduce="mean"),
        Recorder("margin", margin, reduce="last"),
    ]
    if extra_recorder is not None:
        recs.append(extra_recorder)
    return train_ensemble(
        StackedMLP((64, 16, 10)), X, y, mask=mask, loss="cross_entropy", epochs=2,
        batch_size=36, trim=0.1, recorders=recs, record_every=3, record_initial=True,
        keep_snapshots=True, device=device, optimizer=optimizer,
    )  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_update_loop_makes_no_host_round_trip(digits, monkeypatch, device):
    X, y = digits
    trips = _HostTrips(monkeypatch)
    trips.watch_update_loop(monkeypatch)
    res = _busy_run(X, y, device)
    assert trips.calls == []
    # The run did everything the loop can do, and its results came back.
    assert res.records["loss"].shape == (len(res.record_updates), 5, len(X))
    assert len(res.snapshots) == len(res.record_updates) and res.records["acc"].shape == (5, 40)
    # The counter sees a recorder that reads a device value on the host.
    def host_read(outputs, targets):
        return correctness(outputs, targets) * float(outputs.abs().max().item() > 0)

    # (on CUDA the sync-debug mode also stops the run at the read)
    with pytest.raises(RuntimeError, match="synchroniz") if device == "cuda" else nullcontext():
        _busy_run(X, y, device, Recorder("host", host_read, reduce="last"))
    assert "item" in trips.calls


# ------------------------------------------------------- schedule, precision, compile


def test_each_member_reads_its_own_rows_in_the_epochs_order(digits):
    from imod.engine.schedule import Schedule, batch_counts, batch_flags, batch_order, own_rows

    X, _ = digits
    mask = bernoulli_mask(6, len(X), 0.1, random_state=0)  # sparse: uneven row counts
    own_max = int(mask.sum(axis=1).max())
    sched = Schedule.build(3, epochs=2, n_samples=len(X), own_max=own_max, batch=8)
    width = sched.steps_per_epoch * 8
    assert width >= own_max > width - 8
    for epoch in range(2):
        table = own_rows(torch.as_tensor(mask), torch.as_tensor(sched.orders[epoch, :len(X)]),
                         width).numpy()
        order = batch_order(3, epoch, len(X))
        for k in range(6):
            own = order[mask[k, order]]  # the member's rows, in the epoch's order
            np.testing.assert_array_equal(table[k, : own.size], own)
    counts = batch_counts(mask.sum(axis=1), 8, sched.steps_per_epoch)
    np.testing.assert_array_equal(counts.sum(axis=0), mask.sum(axis=1))
    active, full = batch_flags(counts, 8)
    assert active[0] and not active.all() and not full[-1]  # smaller members finish early


def test_a_steps_batch_is_as_wide_as_its_largest_members_rows(digits, monkeypatch):
    """Own-row batches carry no padding column that no member needs: the last steps of
    an epoch are as wide as the run's largest member's rows there, in every chunk (so a
    member's shapes, hence its numbers, do not depend on its chunk)."""
    from imod.engine.schedule import batch_counts

    X, y = digits
    mask = bernoulli_mask(4, len(X), 0.1, random_state=0)  # uneven row counts
    widths: list[int] = []
    forward = StackedMLP.forward

    def spy(self, params, x, own=False):
        if x.ndim == 3 and torch.is_grad_enabled():  # a training batch of own rows
            widths.append(x.shape[1])
        return forward(self, params, x, own)

    monkeypatch.setattr(StackedMLP, "forward", spy)
    kw = dict(mask=mask, loss="cross_entropy", epochs=1, batch_size=16, random_state=0,
              device="cpu")
    a = train_ensemble(StackedMLP((64, 8, 10)), X, y, **kw)
    steps = -(-int(mask.sum(axis=1).max()) // 16)
    largest = batch_counts(mask.sum(axis=1), 16, steps).max(axis=1)
    assert widths == largest.tolist() and largest[-1] < 16
    widths.clear()
    b = train_ensemble(StackedMLP((64, 8, 10)), X, y, chunk_size=2, **kw)
    assert set(widths) == set(largest.tolist())
    for name in a.params:
        torch.testing.assert_close(a.params[name], b.params[name], rtol=0, atol=0)


def test_fp32_means_tf32_products_on_cuda_and_ieee_turns_them_off():
    from imod.engine.runtime import precision_context

    cuda = torch.device("cuda")
    before = torch.backends.cuda.matmul.allow_tf32
    for precision, tf32 in [("fp32", True), ("tf32", True), ("ieee", False)]:
        with precision_context(precision, cuda):
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
            assert torch.backends.cudnn.allow_tf32 is tf32
        assert torch.backends.cuda.matmul.allow_tf32 is before


def test_ieee_precision_on_the_cpu_is_plain_fp32(digits):
    X, y = digits
    kw = dict(n_members=2, loss="cross_entropy", epochs=1, random_state=0, device="cpu")
    a = train_ensemble(StackedMLP((64, 8, 10)), X, y, **kw)
    b = train_ensemble(StackedMLP((64, 8, 10)), X, y, precision="ieee", **kw)
    torch.testing.assert_close(a.params["0.weight"], b.params["0.weight"], rtol=0, atol=0)


def test_compile_falls_back_to_eager_where_it_fails(digits, monkeypatch):
    X, y = digits
    kw = dict(n_members=3, loss="cross_entropy", epochs=1, trim=0.1, random_state=0,
              device="cpu")
    eager = train_ensemble(StackedMLP((64, 8, 10)), X, y, **kw)

    def broken_compile(fn, **options):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler here")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler here.*training eagerly"):
        fallback = train_ensemble(StackedMLP((64, 8, 10)), X, y, compile=True, **kw)
    torch.testing.assert_close(eager.params["0.weight"], fallback.params["0.weight"])
    with pytest.raises(ValueError, match="compile must be True or False"):
        train_ensemble(StackedMLP((64, 8, 10)), X, y, compile="yes", **kw)


# ------------------------------------------------------------ bfloat16 optimizer state


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1200]], y[order[:1200]], X[order[1200:]], y[order[1200:]]


class _KeepOptimizers:
    """Keeps every StackedOptimizer the update loop builds, to look at its state."""

    def __init__(self, monkeypatch):
        from imod.engine import loop
        from imod.engine.optim import StackedOptimizer

        self.made = []
        keep = self.made

        class Kept(StackedOptimizer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                keep.append(self)

        monkeypatch.setattr(loop, "StackedOptimizer", Kept)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bf16_adam_state_learns_digits_as_well_as_fp32_state(digits_split, monkeypatch,
                                                             precision):
    Xtr, ytr, Xte, yte = digits_split
    kept = _KeepOptimizers(monkeypatch)
    acc = {}
    mask = balanced_mask(8, len(Xtr), 0.7, random_state=0)
    for state in ("fp32", "bf16"):
        res = train_ensemble(
            StackedMLP((64, 32, 10)), Xtr, ytr, mask=mask,
            loss="cross_entropy", epochs=12, batch_size=32, random_state=0, device="cpu",
            optimizer=OptimizerSpec("adam", lr=1e-3, state_precision=state), precision=precision,
            recorders=[Recorder("acc", correctness, X=Xte, y=yte, reduce="last")],
            record_every="end",
        )  # fmt: skip
        acc[state] = float(np.mean(res.records["acc"]))
    fp32_opt, bf16_opt = kept.made
    assert {m.dtype for m in fp32_opt.exp_avg + fp32_opt.exp_avg_sq} == {torch.float32}
    assert {m.dtype for m in bf16_opt.exp_avg + bf16_opt.exp_avg_sq} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in res.params.values())  # master weights
    assert acc["fp32"] > 0.9  # a real run, not a chance-level pair
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.005, acc


def test_bf16_adam_state_skips_inactive_members_exactly(digits):
    from imod.engine.optim import StackedOptimizer

    X, y = digits
    members = StackedMLP((64, 16, 10))
    params = {k: v.requires_grad_(True) for k, v in members.init(0, range(3)).items()}
    opt = StackedOptimizer(OptimizerSpec("adam", state_precision="bf16"), params)
    x, t = torch.as_tensor(X[:64]), torch.as_tensor(y[:64])
    before = None
    for step, active in enumerate([[True] * 3, [True, False, True], [True, False, False]]):
        out = members.forward(params, x)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 10), t.repeat(3), reduction="sum")
        grads = torch.autograd.grad(loss, list(params.values()))
        if step == 1:
            before = ({k: v.detach().clone() for k, v in params.items()},
                      [m.clone() for m in opt.exp_avg + opt.exp_avg_sq])
        opt.step(params, dict(zip(params, grads)), torch.tensor(active))
    assert opt.steps.tolist() == [3.0, 1.0, 2.0]
    old_params, old_moments = before
    for name, p in params.items():  # member 1 took no step after the first
        assert torch.equal(p[1], old_params[name][1]) and not torch.equal(p[0], old_params[name][0])
    for new, old in zip(opt.exp_avg + opt.exp_avg_sq, old_moments):
        assert new.dtype == torch.bfloat16 and torch.equal(new[1], old[1])


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_adam_state_makes_no_host_round_trip(digits, monkeypatch, device):
    X, y = digits
    trips = _HostTrips(monkeypatch)
    trips.watch_update_loop(monkeypatch)
    res = _busy_run(X, y, device, optimizer=OptimizerSpec("adam", state_precision="bf16"))
    assert trips.calls == []
    assert res.records["acc"].shape == (5, 40)


def test_optimizer_state_precision_is_checked():
    with pytest.raises(ValueError, match="unknown state_precision 'fp16'"):
        OptimizerSpec("adam", state_precision="fp16")
    with pytest.raises(ValueError, match="is for adam and adamw"):
        OptimizerSpec("sgd", state_precision="bf16")


def test_bf16_adam_moments_track_fp32_ones_as_gradients_shrink(digits):
    # The same stream of real gradients into a float32-state and a bfloat16-state
    # Adam: large, then 100x smaller. v's per-step change (0.1 %) is below half a
    # bfloat16 ulp; rounded to nearest it would stay at its peak (~60 % too high here).
    from imod.engine.optim import StackedOptimizer

    X, y = digits
    members = StackedMLP((64, 16, 10))
    params = {k: v.requires_grad_(True) for k, v in members.init(0, range(2)).items()}
    shadow = {k: v.detach().clone() for k, v in params.items()}
    opt32 = StackedOptimizer(OptimizerSpec("adam"), params)
    opt16 = StackedOptimizer(OptimizerSpec("adam", state_precision="bf16"), shadow)
    x, t = torch.as_tensor(X[:64]), torch.as_tensor(y[:64])
    active = torch.tensor([True, True])
    for step in range(600):
        scale = 1.0 if step < 100 else 0.01
        out = members.forward(params, x)
        loss = scale * torch.nn.functional.cross_entropy(out.reshape(-1, 10), t.repeat(2))
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        opt32.step(params, grads, active, True)
        opt16.step(shadow, grads, active, True)
    for v32, v16 in zip(opt32.exp_avg_sq, opt16.exp_avg_sq):
        ratio = v16.float().sum() / v32.sum()
        assert abs(ratio.item() - 1) < 0.05, ratio


def test_compiled_bf16_adam_step_matches_the_eager_step(digits, monkeypatch):
    """The bf16-state step runs compiled (one fused loop per tensor); the same function
    run eagerly gives the same weights and moments on a stream of real gradients (the
    rounding noise is a hash, not a generator, so both round alike)."""
    from imod.engine import optim
    from imod.engine.optim import StackedOptimizer

    X, y = digits
    members = StackedMLP((64, 16, 10))
    params = {k: v.requires_grad_(True) for k, v in members.init(0, range(2)).items()}
    eager_params = {k: v.detach().clone() for k, v in params.items()}
    spec = OptimizerSpec("adamw", lr=1e-2, weight_decay=1e-3, state_precision="bf16")
    compiled = StackedOptimizer(spec, params)
    with monkeypatch.context() as m:
        m.setattr(optim, "maybe_compile", lambda fn, *a, **k: fn)
        eager = StackedOptimizer(spec, eager_params)
    assert compiled._adam_step is not optim.adam_masked_step
    assert eager._adam_step is optim.adam_masked_step
    x, t = torch.as_tensor(X[:64]), torch.as_tensor(y[:64])
    for active in ([True, True], [True, False], [True, True]) * 4:
        out = members.forward(params, x)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 10), t.repeat(2))
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled.step(params, grads, torch.tensor(active))
        # a failed compile would warn and run eagerly
        assert not [w for w in caught if "torch.compile failed" in str(w.message)]
        eager.step(eager_params, grads, torch.tensor(active))
    for name in params:
        torch.testing.assert_close(params[name].detach(), eager_params[name], rtol=1e-5,
                                   atol=1e-6)
    for a, b in zip(compiled.exp_avg + compiled.exp_avg_sq, eager.exp_avg + eager.exp_avg_sq):
        assert a.dtype == b.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-8)
