"""``PPOConfig``: every hyperparameter of the PPO update, documented and validated in one place.

Each field's docstring is also its ``--help`` text in ``esper-train`` (the CLI reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from esper.simic.checks import check_float
from esper.tamiyo.contract import ActionSpace

#: Entropy-bonus multipliers per head (esper-lite's values): heads whose choices are rarer and easier
#: to collapse (blueprint, tempo) get a little more push to keep exploring.
DEFAULT_ENTROPY_HEAD_MULTIPLIERS: Mapping[str, float] = MappingProxyType(
    {
        "op": 1.0,
        "slot": 1.0,
        "blueprint": 1.3,
        "style": 1.2,
        "tempo": 1.3,
        "alpha_target": 1.2,
        "alpha_speed": 1.2,
        "alpha_curve": 1.2,
    }
)

#: Early stopping fires when a minibatch's approx-KL exceeds this multiple of ``target_kl``
#: (the Stable-Baselines3 rule, also the reference's 1.5).
KL_EARLY_STOP_FACTOR = 1.5


@dataclass(frozen=True, slots=True)
class PPOConfig:
    """Hyperparameters of :class:`~esper.simic.agent.PPOAgent` (defaults tuned for CPU-sized runs)."""

    learning_rate: float = 1e-3
    """Adam step size (constant; no schedule). Range (0, 1]. At 3e-4 with one minibatch an update moved
    the policy by an approx-KL of about 1e-4 on the benchmark, and 40 rounds learned nothing."""
    adam_eps: float = 1e-5
    """Adam epsilon; 1e-5 rather than torch's 1e-8, as in the PPO implementation-details literature."""
    gamma: float = 0.99
    """Discount per RL step (one host epoch), for GAE and for the environment's objective-based reward."""
    gae_lambda: float = 0.95
    """GAE lambda in [0, 1]: 1 = Monte-Carlo returns (high variance), 0 = one-step TD (high bias)."""
    clip_coef: float = 0.2
    """PPO clip epsilon, applied to every head's ratio separately. Range (0, 1)."""
    update_epochs: int = 4
    """Passes over the rollout per update (>= 1); later epochs are cut short by target_kl."""
    num_minibatches: int = 4
    """Minibatches per epoch, made of whole environment sequences. With fewer environments (per
    process) than this, each environment is its own minibatch (see minibatches_for)."""
    target_kl: float | None = 0.015
    """Stop the update when a minibatch's approx-KL exceeds 1.5 x this; None disables early stopping."""
    entropy_coef: float = 0.05
    """Weight of the normalised-entropy bonus (entropy in [0, 1] per head); >= 0. With an anneal
    (entropy_coef_end), the weight at the first update."""
    entropy_coef_end: float | None = None
    """Weight the entropy bonus anneals to, linearly over entropy_anneal_updates updates, and keeps
    afterwards; None = entropy_coef throughout. A high early weight keeps the rare heads exploring
    while the critic is still poor; a low late one stops the bonus from pulling a policy that found
    a plan back towards uniform, where random prunes and germinations break the plan; >= 0."""
    entropy_anneal_updates: int = 0
    """Updates (one per round) the entropy anneal takes; >= 1 with entropy_coef_end, else 0."""
    entropy_coef_per_head: Mapping[str, float] | None = None
    """Multiplier of entropy_coef per head name (heads not listed use 1.0); None = the reference's
    multipliers (DEFAULT_ENTROPY_HEAD_MULTIPLIERS) for the heads the policy has."""
    per_head_normalisation: bool = True
    """Average each head's clipped surrogate over the steps where that head mattered, not over all valid
    steps. Off: a head relevant on 1 step in 8 (blueprint: germinations only) gets 1/8 of the policy
    gradient but a full-weight entropy bonus (a mean over its relevant steps), so entropy dominates it."""
    value_coef: float = 0.5
    """Weight of the value loss (on normalised returns); >= 0."""
    q_coef: float = 0.25
    """Weight of the auxiliary Q(s, op) loss (same normalised target; only the Q head learns from it); >= 0."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip over all policy parameters; > 0."""
    normalize_advantages: bool = True
    """Normalise advantages to zero mean / unit std over all valid steps of the rollout."""
    advantage_std_floor: float = 0.1
    """Lower bound of the std used by advantage normalisation (keeps near-constant advantages from
    being blown up into noise); > 0."""
    normalize_value_targets: bool = True
    """Train the critic on returns divided by their running std (the value normaliser)."""
    value_norm_warmup: int = 32
    """Returns the value normaliser must see before it stops being the identity; >= 1."""

    def __post_init__(self) -> None:
        check_float("learning_rate", self.learning_rate, low_inclusive=False, high=1.0)
        check_float("adam_eps", self.adam_eps, low_inclusive=False, high=1.0)
        check_float("gamma", self.gamma, high=1.0)
        check_float("gae_lambda", self.gae_lambda, high=1.0)
        check_float("clip_coef", self.clip_coef, low_inclusive=False, high=1.0, high_inclusive=False)
        for name in ("update_epochs", "num_minibatches", "value_norm_warmup", "entropy_anneal_updates"):
            value, low = getattr(self, name), 0 if name == "entropy_anneal_updates" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.entropy_coef_end is not None:
            check_float("entropy_coef_end", self.entropy_coef_end)
        if (self.entropy_coef_end is None) != (self.entropy_anneal_updates == 0):
            raise ValueError(
                "an entropy anneal needs both entropy_coef_end and entropy_anneal_updates >= 1 "
                f"(got entropy_coef_end={self.entropy_coef_end}, entropy_anneal_updates={self.entropy_anneal_updates})"
            )
        if self.target_kl is not None:
            check_float("target_kl", self.target_kl, low_inclusive=False)
        for name in ("entropy_coef", "value_coef", "q_coef"):
            check_float(name, getattr(self, name))
        for name in ("max_grad_norm", "advantage_std_floor"):
            check_float(name, getattr(self, name), low_inclusive=False)
        if self.entropy_coef_per_head is not None:
            multipliers = dict(self.entropy_coef_per_head)
            for head, multiplier in multipliers.items():
                check_float(f"entropy_coef_per_head[{head!r}]", multiplier)
            object.__setattr__(self, "entropy_coef_per_head", multipliers)

    def minibatches_for(self, num_envs: int) -> int:
        """Minibatches an update of ``num_envs`` environments takes: ``num_minibatches``, or one per
        environment when there are fewer (a minibatch is a whole environment's sequence, so a run
        with two environments still works at the default of four)."""
        return min(self.num_minibatches, num_envs)

    @property
    def kl_stop_threshold(self) -> float | None:
        """Approx-KL above which the update stops (``1.5 * target_kl``), or None."""
        return None if self.target_kl is None else KL_EARLY_STOP_FACTOR * self.target_kl

    def entropy_coef_at(self, num_updates: int) -> float:
        """Entropy weight of the update that follows ``num_updates`` completed updates (the anneal)."""
        if self.entropy_coef_end is None:
            return self.entropy_coef
        progress = min(1.0, num_updates / self.entropy_anneal_updates)
        return self.entropy_coef + progress * (self.entropy_coef_end - self.entropy_coef)

    def entropy_coefs(self, action_space: ActionSpace, num_updates: int = 0) -> dict[str, float]:
        """Entropy weight per head of ``action_space`` after ``num_updates`` updates:
        ``entropy_coef_at(num_updates) * multiplier``.

        Raises:
            ValueError: an explicit ``entropy_coef_per_head`` names a head that the action space does
                not have (a typo would otherwise be silently ignored).
        """
        unknown = sorted(set(self.entropy_coef_per_head or {}) - set(action_space.head_names))
        if unknown:
            raise ValueError(
                f"entropy_coef_per_head names unknown heads {unknown}; heads: {list(action_space.head_names)}"
            )
        multipliers = self.entropy_coef_per_head
        if multipliers is None:
            multipliers = DEFAULT_ENTROPY_HEAD_MULTIPLIERS
        coef = self.entropy_coef_at(num_updates)
        return {h: coef * multipliers.get(h, 1.0) for h in action_space.head_names}
