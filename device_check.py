"""Temporary GPU check for the lstm/mlp bundles (not part of the repo)."""
import json, random, sys, time, warnings
import torch
sys.path.insert(0, "scripts")
from bench_policy import synthetic_step
from esper.tamiyo.contract import ActionMasks, Observation, SlotConfig, op_conditioned_slot_mask
from esper.tamiyo.policy import create_policy

report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
dev = torch.device("cuda")
for policy in ("lstm", "mlp"):
    torch.manual_seed(0)
    b = create_policy(policy, slot_config=SlotConfig(), device=dev)
    rng = random.Random(0)
    hidden = b.initial_hidden(8)
    results, obs_l, masks_l = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(6):
            obs, masks = synthetic_step(b, 8, rng)
            r = b.get_action(obs, masks, hidden)
            hidden = r.hidden
            heads = dict(masks.heads); heads["slot"] = op_conditioned_slot_mask(masks.slot_by_op, r.actions["op"])
            results.append(r); obs_l.append(obs); masks_l.append(heads)
        seq = Observation(torch.stack([o.features for o in obs_l], 1), torch.stack([o.blueprint_indices for o in obs_l], 1))
        acts = {h: torch.stack([r.actions[h] for r in results], 1) for h in b.action_space.head_names}
        ms = ActionMasks({h: torch.stack([m[h] for m in masks_l], 1) for h in b.action_space.head_names})
        e = b.evaluate_actions(seq, acts, ms)
        (sum(x.sum() for x in e.log_probs.values()) + e.value.sum()).backward()
    lp_diff = max((e.log_probs[h] - torch.stack([r.log_probs[h] for r in results], 1)).abs().max().item() for h in acts)
    v_diff = (e.value - torch.stack([r.value for r in results], 1)).abs().max().item()
    report[f"{policy}_cuda_parity"] = {"max_logprob_diff": lp_diff, "max_value_diff": v_diff,
                                       "warnings": sorted({str(w.message)[:120] for w in caught})}
    print(json.dumps(report), flush=True)

# compiled lstm on cuda: compile cost and steady state
for policy in ("lstm",):
    torch.manual_seed(0)
    b = create_policy(policy, slot_config=SlotConfig(), device=dev, compile_mode="default")
    rng = random.Random(1)
    obs, masks = synthetic_step(b, 16, rng)
    h = b.initial_hidden(16)
    out = {}
    t = time.perf_counter(); b.get_action(obs, masks, h); torch.cuda.synchronize(); out["first_get_action_s"] = time.perf_counter() - t
    for _ in range(5): b.get_action(obs, masks, h)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(50): b.get_action(obs, masks, h)
    torch.cuda.synchronize(); out["get_action_ms_b16"] = (time.perf_counter() - t) / 50 * 1e3
    report[f"{policy}_compiled"] = out
    print(json.dumps(report), flush=True)
