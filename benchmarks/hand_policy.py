"""A hand-written simple_spread policy, as a yardstick for the learned ones, on both physics (envs/mpe.py).

Every agent solves the same landmark assignment (the permutation with the least total agent-to-landmark distance,
from the absolute positions that every agent can compute from its own observation) and steers to its landmark
with a two-step lookahead of its own motion: the move now and the best move next, scored by the distance to the
landmark after each of the next two steps. It ignores the other agents (no collision avoidance) and reads the
positions from the batched env directly, which is what each agent computes (envs/mpe.py, common_knowledge).

    python benchmarks/hand_policy.py            # 2,000 episodes per game -> benchmarks/results/hand_policy.md
"""

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.mpe import MPE_ENV_IDS, N_AGENTS, BatchedMPE

PERMUTATIONS = torch.tensor(list(itertools.permutations(range(N_AGENTS))))


def hand_policy(env: BatchedMPE) -> torch.Tensor:
    """(B, N) actions: the shared landmark assignment, then the two-step lookahead (module docstring)."""
    pos, vel, landmarks = env.agent_pos, env.agent_vel, env.landmark_pos
    dist = (pos.unsqueeze(2) - landmarks.unsqueeze(1)).norm(dim=-1)  # (B, agent, landmark)
    agents = torch.arange(N_AGENTS)
    total = torch.stack([dist[:, agents, perm].sum(-1) for perm in PERMUTATIONS], 1)  # (B, permutations)
    target = landmarks[torch.arange(env.num_envs).unsqueeze(1), PERMUTATIONS[total.argmin(1)]]  # (B, N, 2)
    scores = []  # each agent's own motion under the game's physics, contacts left out
    for move in env._moves:
        pos1, vel1 = env.integrate(pos, vel, move)
        best_next = []
        for next_move in env._moves:
            pos2, vel2 = env.integrate(pos1, vel1, next_move)
            pos3, _ = env.integrate(pos2, vel2, env._moves[0])
            best_next.append((pos2 - target).norm(dim=-1) + (pos3 - target).norm(dim=-1))
        scores.append(torch.stack(best_next, -1).min(-1).values)
    return torch.stack(scores, -1).argmin(-1)


def evaluate(env_id: str, episodes: int, seed: int = 0) -> dict[str, float]:
    """Mean return on our scale (G) and the EPyMARL paper's (P), and colliding pair-steps, over `episodes`."""
    env = BatchedMPE(episodes, env_id=env_id)
    env.reset(seed=seed)
    episode_return = torch.zeros(episodes)
    for _ in range(env.episode_length):
        episode_return += env.step(hand_policy(env))[2]
    return {"return": episode_return.mean().item(), "epymarl_return": env.epymarl_return(episode_return).mean().item(),
            "colliding_pair_steps": env.episode_collisions.float().mean().item()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per game (seeds 0 .. episodes - 1)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "hand_policy.md"))
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    lines = [(f"The hand-written simple_spread policy of benchmarks/hand_policy.py, {args.episodes:,} episodes per "
              "game (the same start positions on both), mean per episode."), "",
             "| game | physics | ours | EPyMARL scale | colliding pair-steps |", "|---|---|---|---|---|"]
    for env_id in MPE_ENV_IDS:
        result = evaluate(env_id, args.episodes)
        physics = "original MPE (the paper's)" if env_id == "simple_spread_v2" else "mpe2"
        lines.append(f"| {env_id} | {physics} | {result['return']:.2f} | {result['epymarl_return']:.1f} "
                     f"| {result['colliding_pair_steps']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
