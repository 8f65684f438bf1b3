"""The fused update (``env/sgd.py``) is PyTorch's SGD with per-module clipping, laid out flat."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from esper.simic.env.sgd import FlatSGD, ModuleSGD, SGDSettings

HOST = SGDSettings(lr=0.05, momentum=0.9, weight_decay=5e-4, max_grad_norm=1.0)
SEED = SGDSettings(lr=0.02, momentum=0.5, max_grad_norm=0.0)


def _module(seed: int, widths: tuple[int, int]) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(widths[0], widths[1]), nn.Tanh(), nn.Linear(widths[1], 2))


def _reference_step(modules: list[nn.Module], optimizers: list[torch.optim.SGD], settings: list[SGDSettings]) -> None:
    for module, optimizer, s in zip(modules, optimizers, settings, strict=True):
        if s.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), s.max_grad_norm)
        optimizer.step()


def _grads(modules: list[nn.Module], step: int) -> list[list[torch.Tensor]]:
    """Deterministic gradients, large enough that the host's clip is active."""
    generator = torch.Generator().manual_seed(step)
    return [[torch.randn(p.shape, generator=generator) * 3.0 for p in m.parameters()] for m in modules]


def test_fused_step_matches_torch_sgd_with_separate_clipping() -> None:
    """Two environments (rows) of host + seed, and a second block of one seed: five steps, parameter and momentum."""
    reference = [_module(0, (3, 4)), _module(1, (4, 4)), _module(2, (3, 4)), _module(3, (4, 4)), _module(4, (4, 4))]
    settings = [HOST, SEED, HOST, SEED, SEED]
    fused = [_module(i, m[0].weight.shape[::-1]) for i, m in enumerate(reference)]
    optimizers = [
        torch.optim.SGD(m.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        for m, s in zip(reference, settings, strict=True)
    ]
    sgds = [ModuleSGD(list(m.parameters()), s) for m, s in zip(fused, settings, strict=True)]
    flat = FlatSGD([[[sgds[0], sgds[1]], [sgds[2], sgds[3]]], [[sgds[4]]]])
    for step in range(5):
        grads = _grads(reference, step)
        for module, module_grads in zip(reference, grads, strict=True):
            for p, g in zip(module.parameters(), module_grads, strict=True):
                p.grad = g.clone()
        expected_norms = [torch.linalg.vector_norm(torch.cat([g.flatten() for g in gs])) for gs in grads]
        _reference_step(reference, optimizers, settings)
        flat.zero_grad()
        flat_grads = [g for gs in grads for g in gs]
        for b, block in enumerate(flat.blocks):
            for r, row in enumerate(block):
                count = sum(len(m.params) for m in row)
                for index in range(count):
                    flat.row_tensor(b, r, index, grad=True).copy_(flat_grads.pop(0).flatten())
        norms = flat.step()
        torch.testing.assert_close(norms, torch.stack(expected_norms), rtol=1e-6, atol=1e-6)
    flat.write_back()
    for module, ref_module in zip(fused, reference, strict=True):
        for p, q in zip(module.parameters(), ref_module.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for sgd, optimizer in zip(sgds, optimizers, strict=True):
        buffers = [optimizer.state[p]["momentum_buffer"].flatten() for p in optimizer.param_groups[0]["params"]]
        assert sgd.momentum is not None
        torch.testing.assert_close(sgd.momentum, torch.cat(buffers), rtol=1e-5, atol=1e-6)


def test_the_first_step_and_a_reset_start_from_zero_momentum() -> None:
    module = _module(0, (2, 3))
    sgd = ModuleSGD(list(module.parameters()), SGDSettings(lr=0.1, momentum=0.9))
    before = [p.detach().clone() for p in module.parameters()]
    flat = FlatSGD([[[sgd]]])
    flat.grad.fill_(1.0)
    flat.step()
    flat.write_back()
    for p, b in zip(module.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), b - 0.1)  # buf = grad on the first step: p − lr·1
    assert sgd.momentum is not None and bool((sgd.momentum == 1.0).all())
    sgd.reset()
    assert sgd.momentum is None and bool((sgd.momentum_or_zeros() == 0).all())


def test_tensor_norms_and_segments_locate_each_module() -> None:
    a, b = (
        ModuleSGD(list(_module(0, (2, 3)).parameters()), SEED),
        ModuleSGD(list(_module(1, (2, 3)).parameters()), SEED),
    )
    flat = FlatSGD([[[a], [b]]])
    flat.grad.zero_()
    flat.row_tensor(0, 1, 2, grad=True).fill_(2.0)  # row 1, tensor 2 (the second Linear's weight: 6 entries)
    norms = flat.tensor_norms()
    assert norms.shape == (8,)
    assert list(flat.tensor_range(0, 1, 0)) == [4, 5, 6, 7]
    assert norms[6].item() == pytest.approx(2.0 * 6**0.5) and norms.sum().item() == pytest.approx(2.0 * 6**0.5)
    assert flat.segment(0, 1, 0) == 1 and flat.step()[1].item() == pytest.approx(2.0 * 6**0.5)


def test_stacked_rows_are_dense_views_of_the_buffer() -> None:
    rows = [ModuleSGD(list(_module(i, (2, 3)).parameters()), SEED) for i in range(3)]
    flat = FlatSGD([[[row] for row in rows]])
    weight = flat.stacked(0, 0, (3, 2))
    assert weight.is_contiguous() and weight.shape == (3, 3, 2)
    torch.testing.assert_close(weight[2], rows[2].params[0].detach())


def test_rows_of_a_block_must_agree() -> None:
    small, large = _module(0, (2, 3)), _module(1, (2, 5))
    with pytest.raises(ValueError, match="same sizes and settings"):
        FlatSGD([[[ModuleSGD(list(small.parameters()), SEED)], [ModuleSGD(list(large.parameters()), SEED)]]])
    with pytest.raises(ValueError, match="same sizes and settings"):
        FlatSGD([[[ModuleSGD(list(small.parameters()), SEED)], [ModuleSGD(list(small.parameters()), HOST)]]])
