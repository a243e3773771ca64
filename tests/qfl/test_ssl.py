"""SSL-backbone FL: ResNet encoders, NT-Xent, federated SimCLR, task heads, end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F

from qfl.algorithms.fedavg import star_transport
from qfl.algorithms.ssl import (
    DOWNLOAD_TAG,
    UPLOAD_TAG,
    FedSimCLR,
    HeadConfig,
    SimCLRConfig,
    SSLClient,
    SupervisedConfig,
    masked_logits,
    pretrain_simclr,
    train_centralized,
    train_heads,
)
from qfl.data import TensorDataset
from qfl.experiments.ssl import SSLExperiment, load_clients, run_ssl_experiment
from qfl.losses.ssl import nt_xent
from qfl.models.resnet_ssl import (
    Classifier,
    ProjectionHead,
    ResNetEncoder,
    SimCLRNet,
    resnet18,
    resnet50,
)
from qkd.errors import ParameterError, UnknownNameError

# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(("depth", "dim"), [(18, 8 * 4), (50, 32 * 4)])
@pytest.mark.parametrize("small_stem", [True, False])
def test_encoder_shapes(depth: int, dim: int, small_stem: bool) -> None:
    enc = ResNetEncoder(depth, width=4, small_stem=small_stem)
    assert enc.feature_dim == dim
    assert tuple(enc(torch.zeros(2, 3, 32, 32)).shape) == (2, dim)
    # The small stem keeps the resolution; the ImageNet stem divides it by 4.
    h = enc.forward_to(torch.zeros(1, 3, 32, 32), 0)
    assert h.shape[-1] == (32 if small_stem else 8)


def test_encoder_split_and_seed() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    enc = resnet18(width=4, seed=5)
    torch.testing.assert_close(enc.forward_from(enc.forward_to(x, 3), 3), enc(x))
    same = resnet18(width=4, seed=5)
    other = resnet18(width=4, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(enc.parameters(), same.parameters(), strict=True))
    assert not torch.equal(enc.stem[0].weight, other.stem[0].weight)
    assert resnet50(width=2).depth == 50


def test_groupnorm_output_does_not_depend_on_the_batch() -> None:
    enc = ResNetEncoder(18, width=4)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(enc(x[:1]), enc(x)[:1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_encoder_works_with_functional_call_and_vmap(norm: str) -> None:
    enc = ResNetEncoder(18, width=4, norm=norm)
    assert not list(enc.buffers())  # no running statistics anywhere
    params = {k: torch.stack([v, v + 0.01]) for k, v in enc.named_parameters()}
    x = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = vmap(lambda p, xb: functional_call(enc, p, (xb,)), randomness="error")(params, x)
    torch.testing.assert_close(out[0], enc(x[0]), atol=1e-4, rtol=1e-4)


def test_model_arguments_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="depth: must be one of '18', '50', got 34"):
        ResNetEncoder(34)
    with pytest.raises(UnknownNameError, match="norm: must be one of"):
        ResNetEncoder(18, norm="layer")
    with pytest.raises(ParameterError, match="width: must be a positive integer"):
        ResNetEncoder(18, width=0)
    with pytest.raises(ParameterError, match="num_classes"):
        Classifier(ResNetEncoder(18, width=2), 0)


# --------------------------------------------------------------------------- NT-Xent


def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Row by row, as in SimCLR's Algorithm 1."""
    z = F.normalize(torch.cat((z1, z2)), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = torch.zeros(())
    for i in range(n2):
        j = (i + n) % n2
        sims = torch.stack([z[i] @ z[k] / t for k in range(n2) if k != i])
        total = total - (z[i] @ z[j] / t - torch.logsumexp(sims, 0))
    return total / n2


def test_nt_xent_matches_the_definition() -> None:
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for t in (0.1, 0.5, 1.0):
        torch.testing.assert_close(nt_xent(z1, z2, t), _nt_xent_reference(z1, z2, t))
    torch.testing.assert_close(nt_xent(z1, z2), nt_xent(z2, z1))  # symmetric
    torch.testing.assert_close(nt_xent(3 * z1, z2), nt_xent(z1, z2))  # scale-invariant


def test_nt_xent_prefers_aligned_views() -> None:
    g = torch.Generator().manual_seed(4)
    z = torch.randn(8, 16, generator=g)
    aligned = nt_xent(z, z + 0.01 * torch.randn(8, 16, generator=g))
    shuffled = nt_xent(z, z[torch.randperm(8, generator=g)])
    assert float(aligned) < float(shuffled)


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ParameterError, match="temperature: must be > 0"):
        nt_xent(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ParameterError, match="batch size: must be >= 2"):
        nt_xent(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ParameterError, match="two equal"):
        nt_xent(torch.zeros(2, 3), torch.zeros(3, 3))


# --------------------------------------------------------------------------- heads


def test_padded_masked_head_equals_a_head_of_the_right_size() -> None:
    g = torch.Generator().manual_seed(6)
    h = torch.randn(10, 4, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    w = torch.randn(5, 4, generator=g, requires_grad=True)  # padded to 5 classes
    mask = torch.arange(5) < 3
    loss = F.cross_entropy(masked_logits(h @ w.T, mask), y)
    loss.backward()
    w3 = w.detach()[:3].clone().requires_grad_(True)
    ref = F.cross_entropy(h @ w3.T, y)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    assert w.grad is not None and w3.grad is not None
    torch.testing.assert_close(w.grad[:3], w3.grad)
    assert torch.equal(w.grad[3:], torch.zeros(2, 4))


def _colour_task(n: int, k: int, name: str, seed: int, size: int = 8) -> TensorDataset:
    """Images whose class is their colour (plus noise): linearly separable from pixels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    palette = torch.tensor(
        [[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1], [0.1, 1.0, 1.0]]
    )[:k]
    x = palette[y].view(n, 3, 1, 1) + 0.05 * torch.randn(n, 3, size, size, generator=g)
    return TensorDataset(x.clamp(0, 1), y, tuple(f"c{i}" for i in range(k)), name)


def _clients() -> list[SSLClient]:
    return [
        SSLClient("five", _colour_task(20, 5, "five", 0), _colour_task(30, 5, "five", 1)),
        SSLClient("two", _colour_task(12, 2, "two", 2), _colour_task(22, 2, "two", 3)),
    ]


def _net(width: int = 4) -> SimCLRNet:
    # One normalisation group: with one channel per group (GroupNorm = InstanceNorm at
    # width 4) the per-image colour, which is all these toy tasks are about, is removed.
    enc = ResNetEncoder(18, width=width, norm_groups=1, seed=1)
    return SimCLRNet(enc, ProjectionHead(enc.feature_dim, out_dim=8, seed=2))


@pytest.mark.parametrize("finetune", [False, True])
def test_heads_learn_a_separable_task_per_client(finetune: bool) -> None:
    clients = _clients()
    enc = _net().encoder
    params = {k: v.detach() for k, v in enc.named_parameters()}
    # Linear heads train on cached features (cheap); the last block costs a forward pass.
    epochs, lr = (15, 2e-2) if finetune else (60, 5e-2)
    cfg = HeadConfig(epochs=epochs, batch_size=32, lr=lr, finetune_last_block=finetune)
    results = train_heads(enc, params, clients, cfg, seed=0)
    assert [r.name for r in results] == ["five", "two"]
    assert [(r.n_train, r.n_eval) for r in results] == [(20, 30), (12, 22)]
    for r in results:
        assert r.accuracy >= 0.9, r


def test_heads_batched_equal_sequential() -> None:
    clients = _clients()
    enc = _net().encoder
    params = {k: v.detach() for k, v in enc.named_parameters()}
    out = [
        train_heads(enc, params, clients, HeadConfig(epochs=3, batch_size=8, engine=e), seed=s)
        for e, s in (("batched", 1), ("sequential", 1), ("batched", 1), ("batched", 2))
    ]
    for a, b in zip(out[0], out[1], strict=True):
        assert a.accuracy == b.accuracy
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
    assert out[2] == out[0]  # same seed, same result
    assert [r.train_loss for r in out[3]] != [r.train_loss for r in out[0]]


def test_centralized_baseline_learns() -> None:
    cfg = SupervisedConfig(epochs=8, batch_size=32, lr=1e-2, augment=None, engine="sequential")
    results = train_centralized(_net().encoder, _clients(), cfg, seed=0)
    assert results[0].accuracy > 0.5 and results[1].accuracy > 0.7, results


# --------------------------------------------------------------------------- phase 1


def test_federated_simclr_goes_through_the_transport() -> None:
    clients = _clients()
    transport = star_transport(["a", "b"], "hub")
    fed = FedSimCLR(
        _net(),
        [c.unlabeled for c in clients],
        SimCLRConfig(rounds=1, batch_size=8),
        clients=["a", "b"],
        server="hub",
        transport=transport,
        seed=0,
    )
    before = {k: v.clone() for k, v in fed.params.items()}
    record = fed.run_round()
    tags = [(m.src, m.dst, m.tag) for m in transport.log]
    assert tags == [
        ("hub", "a", DOWNLOAD_TAG),
        ("hub", "b", DOWNLOAD_TAG),
        ("a", "hub", UPLOAD_TAG),
        ("b", "hub", UPLOAD_TAG),
    ]
    n_bytes = sum(v.numel() * 4 for v in before.values())
    assert record.bytes_down == record.bytes_up == 2 * n_bytes
    assert transport.bytes_sent == 4 * n_bytes
    assert all(torch.isfinite(torch.tensor(record.client_loss)))
    assert any(not torch.equal(before[k], fed.params[k]) for k in before)


def test_federated_simclr_batched_equals_sequential() -> None:
    # 16 and 22 images: one full batch each per round, and 6 images sit out each round.
    unlabeled = [c.unlabeled.subset(range(16)) for c in _clients()[:1]] + [_clients()[1].unlabeled]
    # SGD: Adam's normalised step turns float noise in near-zero gradients into lr-sized
    # differences, which would hide real ones.
    cfg = SimCLRConfig(rounds=2, batch_size=16, optimizer="sgd", lr=0.05)
    runs = {
        e: pretrain_simclr(_net(), unlabeled, replace(cfg, engine=e), seed=3)
        for e in ("batched", "sequential")
    }
    (pb, hb), (ps, hs) = runs["batched"], runs["sequential"]
    start = dict(_net().named_parameters())
    assert any(not torch.allclose(pb[k], start[k]) for k in pb)
    for k in pb:
        torch.testing.assert_close(pb[k], ps[k], atol=1e-5, rtol=1e-4)
    for rb, rs in zip(hb, hs, strict=True):
        assert rb.client_loss == pytest.approx(rs.client_loss, rel=1e-5)


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ParameterError, match="batch_size: must be >= 2"):
        SimCLRConfig(batch_size=1)
    with pytest.raises(UnknownNameError, match="engine: must be one of"):
        HeadConfig(engine="threads")
    with pytest.raises(ParameterError, match="epochs: must be an integer >= 1"):
        SupervisedConfig(epochs=0)
    with pytest.raises(ParameterError, match="server"):
        FedSimCLR(_net(), [c.unlabeled for c in _clients()], SimCLRConfig(), server=0)


# --------------------------------------------------------------------------- end to end


def test_end_to_end_on_the_mini_datasets(flowers_dir: Path, intel_dir: Path) -> None:
    clients = load_clients(image_size=12, seed=0, flowers_root=flowers_dir,
                                   intel_root=intel_dir)  # fmt: skip
    assert [c.name for c in clients] == ["flowers102", "intel"]
    assert [c.num_classes for c in clients] == [102, 6]
    # 25 % labeled, stratified: Flowers mini has 5 images per class, Intel 150.
    assert [(len(c.labeled), len(c.unlabeled)) for c in clients] == [(102, 408), (228, 672)]
    assert bool((clients[0].labeled.y.bincount(minlength=102) == 1).all())
    # Every 4th labeled and 8th unlabeled image keeps the run short; the tasks keep their
    # 102 and 6 classes.
    small = [
        SSLClient(
            c.name,
            c.labeled.subset(range(0, len(c.labeled), 4)),
            c.unlabeled.subset(range(0, len(c.unlabeled), 8)),
        )
        for c in clients
    ]
    exp = SSLExperiment(
        image_size=12,
        width=2,
        projection_dim=8,
        pretrain=SimCLRConfig(rounds=1, batch_size=32),
        heads=HeadConfig(epochs=2, batch_size=64),
        baseline=SupervisedConfig(epochs=1, batch_size=64),
    )
    result = run_ssl_experiment(exp, small)
    for table in (result.ssl, result.centralized):
        assert set(table) == {"flowers102", "intel"}
        assert all(0.0 <= v <= 100.0 for v in table.values())
    assert len(result.pretrain_history) == 1
    assert set(result.seconds) == {"pretrain", "heads", "centralized"}
