"""GAE: the hand-worked example, SB3-style oracle episodes, and vectorised == plain reverse loop."""

from __future__ import annotations

import itertools

import pytest
import torch

from esper.simic.agent import generalized_advantage_estimate, normalize_advantages

F, T_ = False, True


def _flags(values: list[bool]) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.bool)


def test_hand_worked_example_with_terminal_and_truncation_bootstrap() -> None:
    # Reference worked example: done=[F,T,F,T], trunc=[F,F,F,T] -> terminated=[F,T,F,F], truncated=[F,F,F,T].
    rewards = torch.tensor([[1.0, 1.0, 10.0, 2.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.25, 1.0, 0.75]], dtype=torch.float64)
    bootstrap = torch.tensor([[0.0, 0.0, 0.0, 4.0]], dtype=torch.float64)
    result = generalized_advantage_estimate(
        rewards, values, bootstrap, _flags([F, T_, F, F]), _flags([F, F, F, T_]), _flags([T_] * 4), gamma=0.9, lam=0.5
    )
    expected = torch.tensor([[1.0625, 0.75, 11.8575, 4.85]], dtype=torch.float64)
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.returns, expected + values, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("terminated", "truncated", "expected"),
    [
        # The env's last epoch (a true terminal): δ2 = 4 − 2 = 2, δ1 = 2 + 0.5·2 − 1 = 2,
        # δ0 = 1 + 0.5·1 − 0.5 = 1; A2 = 2, A1 = 2 + 0.25·2 = 2.5, A0 = 1 + 0.25·2.5 = 1.625.
        ([F, F, T_], [F, F, F], [1.625, 2.5, 2.0]),
        # A time-limit truncation bootstraps V(s_3) = 8: δ2 = 4 + 0.5·8 − 2 = 6, A1 = 2 + 0.25·6 = 3.5,
        # A0 = 1 + 0.25·3.5 = 1.875.
        ([F, F, F], [F, F, T_], [1.875, 3.5, 6.0]),
    ],
)
def test_three_step_episode_terminal_is_not_bootstrapped_truncation_is(
    terminated: list[bool], truncated: list[bool], expected: list[float]
) -> None:
    rewards = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    bootstrap = torch.tensor([[0.0, 0.0, 8.0]], dtype=torch.float64)  # read only where truncated
    result = generalized_advantage_estimate(
        rewards, values, bootstrap, _flags(terminated), _flags(truncated), _flags([T_] * 3), gamma=0.5, lam=0.5
    )
    torch.testing.assert_close(result.advantages, torch.tensor([expected], dtype=torch.float64), rtol=0, atol=0)


def _oracle(length: int, episodes: int, gamma: float, lam: float, value: float) -> torch.Tensor:
    """Closed-form GAE for episodes paying 1 on their last step only, under a constant critic."""
    gl = gamma * lam
    row = []
    for t in range(length):
        steps_left = length - 1 - t  # number of deltas of the (gamma*c - c) kind before the last one
        middle = (gamma * value - value) * sum(gl**k for k in range(steps_left))
        row.append(middle + gl**steps_left * (1.0 - value))
    return torch.tensor([row * episodes], dtype=torch.float64)


@pytest.mark.parametrize(("gamma", "lam", "episodes"), list(itertools.product([1.0, 0.99], [1.0, 0.9], [1, 3])))
def test_oracle_episodes_reward_on_last_step(gamma: float, lam: float, episodes: int) -> None:
    length, value = 5, 0.3
    num_steps = length * episodes
    rewards = torch.tensor([([0.0] * (length - 1) + [1.0]) * episodes], dtype=torch.float64)
    values = torch.full((1, num_steps), value, dtype=torch.float64)
    terminated = _flags(([F] * (length - 1) + [T_]) * episodes)
    result = generalized_advantage_estimate(
        rewards,
        values,
        torch.zeros_like(values),
        terminated,
        torch.zeros_like(terminated),
        torch.ones_like(terminated),
        gamma=gamma,
        lam=lam,
    )
    expected = _oracle(length, episodes, gamma, lam, value)
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-12)
    if lam == 1.0:  # Monte-Carlo: returns are the discounted reward-to-go whatever the critic says
        mc = torch.tensor([[gamma ** (length - 1 - t) for t in range(length)] * episodes], dtype=torch.float64)
        torch.testing.assert_close(result.returns, mc, rtol=0, atol=1e-12)


def _reference_loop(rewards, values, bootstrap, terminated, truncated, valid, gamma, lam) -> torch.Tensor:
    """The plain per-env, per-step reverse loop, in Python floats."""
    num_envs, num_steps = rewards.shape
    out = torch.zeros(num_envs, num_steps, dtype=torch.float64)
    for i in range(num_envs):
        running = 0.0
        for t in reversed(range(num_steps)):
            if not valid[i, t]:
                running = 0.0
                continue
            if terminated[i, t]:
                next_value = 0.0
            elif truncated[i, t]:
                next_value = float(bootstrap[i, t])
            else:
                next_value = float(values[i, t + 1])
            delta = float(rewards[i, t]) + gamma * next_value - float(values[i, t])
            ends = bool(terminated[i, t] or truncated[i, t])
            running = delta + (0.0 if ends else gamma * lam * running)
            out[i, t] = running
    return out


def _random_rollout(num_envs: int, num_steps: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(num_envs, num_steps, generator=g, dtype=dtype)
    values = torch.randn(num_envs, num_steps, generator=g, dtype=dtype)
    bootstrap = torch.randn(num_envs, num_steps, generator=g, dtype=dtype)
    lengths = torch.randint(1, num_steps + 1, (num_envs,), generator=g)
    valid = torch.arange(num_steps).unsqueeze(0) < lengths.unsqueeze(1)
    terminated = (torch.rand(num_envs, num_steps, generator=g) < 0.1) & valid
    truncated = (torch.rand(num_envs, num_steps, generator=g) < 0.1) & valid & ~terminated
    last = torch.zeros_like(valid)
    last[torch.arange(num_envs), lengths - 1] = True
    ends_by_termination = torch.rand(num_envs, generator=g) < 0.5
    terminated |= last & ends_by_termination.unsqueeze(1)
    truncated |= last & ~terminated
    return rewards, values, bootstrap, terminated, truncated, valid


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("num_envs", "num_steps"), [(1, 3), (3, 5), (7, 200)])
@pytest.mark.parametrize(("gamma", "lam"), [(0.1, 0.5), (0.99, 0.95), (0.5, 0.99)])
def test_vectorised_matches_plain_reverse_loop(num_envs, num_steps, gamma, lam, dtype) -> None:
    inputs = _random_rollout(num_envs, num_steps, dtype, seed=num_envs * 1000 + num_steps)
    result = generalized_advantage_estimate(*inputs, gamma=gamma, lam=lam)
    expected = _reference_loop(*inputs, gamma, lam).to(dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(result.advantages, expected, rtol=tol, atol=tol)
    valid = inputs[-1]
    assert result.advantages.dtype == dtype
    assert bool((result.advantages[~valid] == 0).all()) and bool((result.returns[~valid] == 0).all())


def test_batched_equals_per_row() -> None:
    inputs = _random_rollout(5, 12, torch.float64, seed=3)
    batched = generalized_advantage_estimate(*inputs, gamma=0.97, lam=0.9)
    for i in range(5):
        row = generalized_advantage_estimate(*(x[i : i + 1] for x in inputs), gamma=0.97, lam=0.9)
        torch.testing.assert_close(row.advantages, batched.advantages[i : i + 1], rtol=0, atol=0)


def test_padding_between_episodes_gets_zero() -> None:
    """A terminal, two padding steps, then a truncated episode in the same row: the later episode's
    advantage must not leak backwards into the padding (it is 0.9 * 0.5 * 2 without the cut)."""
    rewards = torch.tensor([[1.0, 1.0, 7.0, 7.0, 2.0, 2.0]], dtype=torch.float64)
    values = torch.zeros_like(rewards)
    result = generalized_advantage_estimate(
        rewards,
        values,
        torch.zeros_like(rewards),
        _flags([F, T_, F, F, F, F]),
        _flags([F, F, F, F, F, T_]),
        _flags([T_, T_, F, F, T_, T_]),
        gamma=0.9,
        lam=0.5,
    )
    expected = torch.tensor([[1.45, 1.0, 0.0, 0.0, 2.9, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(result.advantages, expected, rtol=0, atol=1e-12)
    assert result.returns[0, 2:4].tolist() == [0.0, 0.0]


def test_terminated_wins_over_truncated() -> None:
    ones = torch.ones(1, 1, dtype=torch.float64)
    result = generalized_advantage_estimate(
        ones, ones * 0.5, ones * 100.0, _flags([T_]), _flags([T_]), _flags([T_]), gamma=0.9, lam=0.9
    )
    assert float(result.advantages) == 0.5  # 1 - 0.5, the bootstrap of 100 is ignored


def _valid_inputs(num_steps: int = 4):
    x = torch.zeros(2, num_steps)
    flags = torch.zeros(2, num_steps, dtype=torch.bool)
    truncated = flags.clone()
    truncated[:, -1] = True
    return [x, x.clone(), x.clone(), flags, truncated, ~flags]


@pytest.mark.parametrize("position", range(6))
def test_shape_mismatch_raises(position: int) -> None:
    inputs = _valid_inputs()
    inputs[position] = inputs[position][:, :3]
    with pytest.raises(ValueError, match=r"shape|\[N, T\]"):
        generalized_advantage_estimate(*inputs, gamma=0.9, lam=0.9)


def test_non_bool_flags_and_bad_hyperparameters_raise() -> None:
    inputs = _valid_inputs()
    inputs[3] = inputs[3].float()
    with pytest.raises(TypeError, match="terminated"):
        generalized_advantage_estimate(*inputs, gamma=0.9, lam=0.9)
    with pytest.raises(ValueError, match="gamma"):
        generalized_advantage_estimate(*_valid_inputs(), gamma=1.5, lam=0.9)
    with pytest.raises(ValueError, match="lam"):
        generalized_advantage_estimate(*_valid_inputs(), gamma=0.9, lam=-0.1)


def test_valid_step_without_episode_end_before_padding_raises() -> None:
    inputs = _valid_inputs()
    inputs[4] = torch.zeros_like(inputs[4])  # last step neither terminated nor truncated
    with pytest.raises(ValueError, match=r"env 0, t 3"):
        generalized_advantage_estimate(*inputs, gamma=0.9, lam=0.9)


def test_normalize_advantages_exact_values_and_floor() -> None:
    advantages = torch.tensor([[1.0, 2.0, 3.0, 4.0, 99.0]], dtype=torch.float64)
    valid = _flags([T_, T_, T_, T_, F])
    stats = normalize_advantages(advantages, valid, std_floor=0.1)
    std = 1.25**0.5
    expected = torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(stats.advantages, expected, rtol=0, atol=1e-12)
    assert float(stats.mean) == 2.5 and abs(float(stats.std) - std) < 1e-12

    nearly_constant = torch.tensor([[1.0, 1.01]], dtype=torch.float64)
    floored = normalize_advantages(nearly_constant, _flags([T_, T_]), std_floor=0.1)
    expected_floored = torch.tensor([[-0.05, 0.05]], dtype=torch.float64)
    torch.testing.assert_close(floored.advantages, expected_floored, rtol=0, atol=1e-12)

    with pytest.raises(ValueError, match="at least one valid"):
        normalize_advantages(advantages, torch.zeros_like(valid), std_floor=0.1)
