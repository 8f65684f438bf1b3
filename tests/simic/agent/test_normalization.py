"""Running normalisers: exact statistics, frozen observation scaling, return-std reward scaling, value scale."""

from __future__ import annotations

import io

import pytest
import torch

from esper.simic.agent import ObservationNormalizer, RewardNormalizer, RunningMeanStd, ValueNormalizer


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_running_mean_std_matches_batch_statistics_and_is_associative() -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.randn(300, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + 5.0
    chunked, whole = RunningMeanStd((4,)), RunningMeanStd((4,))
    for chunk in data.split(37):
        chunked.update(chunk)
    whole.update(data)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.var, whole.var, rtol=0, atol=1e-10)
    torch.testing.assert_close(whole.mean, data.mean(0), rtol=0, atol=1e-9)
    torch.testing.assert_close(whole.var, data.var(0, correction=0), rtol=0, atol=1e-9)
    assert whole.count == 300


def test_running_mean_std_rejects_wrong_feature_shape() -> None:
    with pytest.raises(ValueError, match=r"\(3,\)"):
        RunningMeanStd((3,)).update(torch.zeros(5, 4))


def test_observation_normalizer_is_frozen_between_updates_and_clamps() -> None:
    norm = ObservationNormalizer(3)
    raw = torch.tensor([[0.0, 7.0, 100.0], [2.0, 7.0, 100.0]])
    assert torch.equal(norm.normalize(raw), raw.clamp(-10, 10))  # starts as identity (mean 0, var 1)
    norm.normalize(raw)
    assert norm.stats.count == 0  # normalize never updates
    norm.update(raw)
    out = norm.normalize(torch.tensor([[1.0, 7.0, 100.0], [1e6, 7.0, -1e6]]))
    assert out.dtype == torch.float32
    assert out[0].tolist() == [0.0, 0.0, 0.0]  # the mean maps to exactly 0
    assert out[1, 0] == 10.0 and out[1, 2] == -10.0  # clamped to +-clip
    assert out[1, 1] == 0.0  # a constant feature maps to 0


def test_observation_normalizer_state_dict_roundtrip_weights_only() -> None:
    norm = ObservationNormalizer(2, clip=5.0)
    norm.update(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    restored = ObservationNormalizer(2)
    restored.load_state_dict(_roundtrip(norm.state_dict()))
    probe = torch.tensor([[10.0, -3.0]])
    assert torch.equal(restored.normalize(probe), norm.normalize(probe))
    with pytest.raises(ValueError, match="shape"):
        ObservationNormalizer(3).load_state_dict(norm.state_dict())


def test_reward_normalizer_scales_by_return_std_without_mean_shift() -> None:
    norm = RewardNormalizer(2, gamma=0.0)  # gamma 0: the return is the reward itself
    out = norm.normalize(torch.tensor([2.0, -2.0]), torch.tensor([False, False]))
    torch.testing.assert_close(out, torch.tensor([1.0, -1.0]), rtol=1e-4, atol=0)  # std of {2, -2} is 2
    positive = RewardNormalizer(1, gamma=0.9)
    outs = [positive.normalize(torch.tensor([1.0]), torch.tensor([False])) for _ in range(20)]
    assert all(float(o) > 0 for o in outs)  # no mean subtraction: a positive reward stays positive


def test_reward_normalizer_discounted_return_resets_at_episode_end_and_ignores_inactive() -> None:
    norm = RewardNormalizer(2, gamma=0.5, clip=2.0)
    norm.normalize(torch.tensor([1.0, 4.0]), torch.tensor([False, True]))
    assert norm.discounted_returns.tolist() == [1.0, 0.0]  # env 1 ended: its return restarts
    norm.normalize(torch.tensor([1.0, 3.0]), torch.tensor([False, False]), active=torch.tensor([True, False]))
    assert norm.discounted_returns.tolist() == [1.5, 0.0]  # 0.5 * 1 + 1; inactive env untouched
    assert norm.stats.count == 3  # returns seen: 1, 4, 1.5 (the inactive one is not counted)
    out = norm.normalize(torch.tensor([1000.0, 5.0]), torch.tensor([False, False]), active=torch.tensor([True, False]))
    assert float(out[0]) == 2.0 and float(out[1]) == 0.0  # clipped; inactive env gives 0


def test_reward_normalizer_state_dict_roundtrip_weights_only() -> None:
    norm = RewardNormalizer(2, gamma=0.9, clip=3.0)
    norm.normalize(torch.tensor([1.0, -2.0]), torch.tensor([False, False]))
    restored = RewardNormalizer(2, gamma=0.9)
    restored.load_state_dict(_roundtrip(norm.state_dict()))
    step = (torch.tensor([0.5, 0.5]), torch.tensor([False, True]))
    assert torch.equal(restored.normalize(*step), norm.normalize(*step))
    with pytest.raises(ValueError, match="envs"):
        RewardNormalizer(3, gamma=0.9).load_state_dict(norm.state_dict())


def test_value_normalizer_identity_during_warmup_then_return_std() -> None:
    norm = ValueNormalizer(warmup_samples=4)
    norm.update(torch.tensor([1.0, 2.0, 3.0]))
    assert norm.scale == 1.0 and norm.stats.count == 3
    x = torch.tensor([3.0, -6.0])
    assert torch.equal(norm.normalize(x), x) and torch.equal(norm.denormalize(x), x)
    norm.update(torch.tensor([4.0]))
    assert abs(norm.scale - 1.25**0.5) < 1e-8  # population std of 1..4
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
    restored = ValueNormalizer()
    restored.load_state_dict(_roundtrip(norm.state_dict()))
    assert restored.scale == norm.scale and restored.warmup_samples == 4
    with pytest.raises(ValueError, match="1-D"):
        norm.update(torch.zeros(2, 2))
