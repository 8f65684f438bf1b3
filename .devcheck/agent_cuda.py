"""Device check for esper.simic.agent on CUDA (temporary helper script, not part of the repo)."""
import json, sys, time
import torch
from esper.simic.agent import PPOAgent, PPOConfig, RolloutBuffer
from esper.tamiyo.contract import LifecycleOp, Observation, SeedStage, SlotConfig, SlotState, compute_batch_masks, feature_size
from esper.tamiyo.policy.lstm import LSTMPolicyBundle
from esper.tamiyo.policy.mlp import MLPPolicyBundle

dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SLOTS = SlotConfig(); F = feature_size(3)
out = {"torch": torch.__version__, "gpu": str(dev)}

def masks_for(n, varied=True):
    kinds = [{"r0c0": None, "r0c1": None, "r0c2": None},
             {"r0c0": SlotState(SeedStage.TRAINING, age_epochs=5), "r0c1": None, "r0c2": None},
             {"r0c0": None, "r0c1": SlotState(SeedStage.HOLDING, age_epochs=9), "r0c2": None}]
    return compute_batch_masks([kinds[i % 3] if varied else kinds[0] for i in range(n)], slot_config=SLOTS, topology="mlp").to(dev)

def collect(policy, buffer, seed, masks):
    torch.manual_seed(seed); n, steps = buffer.num_envs, buffer.num_steps
    g = torch.Generator().manual_seed(seed); hidden = policy.initial_hidden(n); buffer.reset(hidden); rs = []
    for t in range(steps):
        obs = Observation(torch.randn(n, F, generator=g).to(dev), torch.full((n, 3), -1, device=dev))
        res = policy.get_action(obs, masks, hidden)
        r = (res.actions["op"] == LifecycleOp.GERMINATE).float()
        last = t == steps - 1
        buffer.add(obs=obs, masks=masks, result=res, executed_op=res.actions["op"], rewards=r,
                   terminated=torch.zeros(n, dtype=torch.bool), truncated=torch.full((n,), last),
                   active=torch.ones(n, dtype=torch.bool), bootstrap_values=policy.get_value(obs, res.hidden) if last else None)
        rs.append(r); hidden = res.hidden
    return float(torch.stack(rs).mean())

for name, cls in (("lstm", LSTMPolicyBundle), ("mlp", MLPPolicyBundle)):
    torch.manual_seed(0)
    policy = cls(slot_config=SLOTS, hidden_size=64, lstm_hidden=64).to(dev)
    agent = PPOAgent(policy, PPOConfig(update_epochs=3, num_minibatches=2))
    buf = RolloutBuffer.for_policy(policy, num_envs=8, num_steps=40)
    collect(policy, buf, 1, masks_for(8))
    t0 = time.perf_counter(); m = agent.update(buf); dt = time.perf_counter() - t0
    out[f"{name}_first_ratio_deviation"] = m.first_ratio_deviation
    out[f"{name}_drift"] = m.rollout_log_prob_drift
    out[f"{name}_update_s"] = dt
    out[f"{name}_metrics"] = m.as_dict()
    # early stop
    torch.manual_seed(0)
    policy = cls(slot_config=SLOTS, hidden_size=64, lstm_hidden=64).to(dev)
    agent = PPOAgent(policy, PPOConfig(learning_rate=1.0, update_epochs=8, num_minibatches=2, target_kl=0.01))
    collect(policy, buf, 2, masks_for(8))
    m = agent.update(buf)
    out[f"{name}_kl_stop"] = [m.early_stopped, m.early_stop_epoch, m.gradient_steps]
    # bandit
    torch.manual_seed(5)
    policy = cls(slot_config=SLOTS, hidden_size=16, lstm_hidden=16).to(dev)
    agent = PPOAgent(policy, PPOConfig(learning_rate=3e-3, update_epochs=4, num_minibatches=2, entropy_coef=0.0))
    buf8 = RolloutBuffer.for_policy(policy, num_envs=8, num_steps=8)
    means = []
    for r in range(6):
        means.append(round(collect(policy, buf8, 100 + r, masks_for(8, varied=False)), 3)); agent.update(buf8)
    means.append(round(collect(policy, buf8, 999, masks_for(8, varied=False)), 3))
    out[f"{name}_bandit"] = means
print(json.dumps(out, indent=1, default=str))
