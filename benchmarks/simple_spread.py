"""MPE simple_spread: every script at its defaults, the environment's speed, and the cost of mi_pg's joint head.

Writes benchmarks/results/simple_spread.{md,json}. The JSON keeps each run's summary and its training curve
(`charts/episodic_return`, read back from the run's TensorBoard log), which benchmarks/figures.py plots.

    python benchmarks/simple_spread.py                         # 11 scripts x 3 seeds at the defaults (2M steps)
    python benchmarks/simple_spread.py --algos mi_pg ipg --seeds 2 --total-timesteps 500000
    python benchmarks/simple_spread.py --report-only           # rebuild the Markdown from the JSON
    python benchmarks/simple_spread.py --ray-address auto      # on a running Ray cluster (docs/sweeps.md)

Runs go through benchmarks/sweep.py: each finished run is saved in the JSON at once, and running the same
command again resumes an interrupted sweep.

Returns here are the team reward summed over the 25 steps: minus the landmark-to-nearest-agent distances,
no collision penalty (envs/mpe.py). The published numbers use another reward; `published()` converts.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.matrix_games import available_algos, score
from benchmarks.sweep import (
    ROOT,
    Results,
    add_arguments,
    common_flags,
    load_results,
    make_jobs,
    run_from_args,
    variants,
)
from envs import BatchedMPE, make_mpe_env

ENV_ID = "simple_spread"

# Papoudakis et al. (2021), "Benchmarking Multi-Agent Deep Reinforcement Learning Algorithms in Cooperative Tasks"
# (NeurIPS Datasets and Benchmarks; EPyMARL), Table 3, MPE Spread, parameter sharing: the maximum over training
# of the mean greedy-evaluation return, mean +- 95% CI over 5 seeds; 2M env steps for off-policy methods,
# 20M for on-policy ones. Read from a secondary copy of the table (which says it was taken from the arXiv HTML
# rendering), not from the paper itself: check before citing. The algorithms this project also has:
PUBLISHED = {"qmix": (-126.62, 2.96), "vdn": (-131.03, 1.85), "iql": (-132.63, 2.22), "mappo": (-133.54, 3.08),
             "ippo": (-133.86, 3.67), "maddpg": (-141.70, 1.74), "coma": (-204.31, 6.30)}


def epymarl_scale_upper_bound(our_return: float, episode_length: int = 25) -> float:
    """Our return R on EPyMARL's reported scale, at best (no collisions).

    EPyMARL's MPE fork gives each agent  -sum_l min_i d(i, l) - (collisions of that agent, itself included:
    an agent always overlaps itself) and reports the sum over the three agents per step (after dividing its
    logged return by 3). Per episode that is  3 R - 3 T - 2 C,  C >= 0 the number of (step, colliding pair)
    events, which our runs do not count; so 3 R - 3 T is an upper bound on the comparable number.
    """
    return 3 * our_return - 3 * episode_length


def our_scale_lower_bound(published_return: float, episode_length: int = 25) -> float:
    """The inverse: a published return P means R = (P + 3 T + 2 C) / 3 >= (P + 3 T) / 3 on our scale."""
    return (published_return + 3 * episode_length) / 3


def env_speed(num_envs: int = 128, episodes: int = 8) -> dict[str, float]:
    """Env steps per second with random actions: B mpe2 envs stepped in a loop vs BatchedMPE (one thread)."""
    torch.set_num_threads(1)
    actions = torch.randint(5, (episodes, 25, num_envs, 3))
    copies = [make_mpe_env() for _ in range(num_envs)]
    agents = copies[0].possible_agents
    start = time.perf_counter()
    for episode in range(episodes):
        for b, env in enumerate(copies):
            env.reset(seed=episode * num_envs + b)
        for t in range(25):
            for b, env in enumerate(copies):
                env.step(dict(zip(agents, actions[episode, t, b].tolist())))
    mpe2_sps = episodes * 25 * num_envs / (time.perf_counter() - start)
    batched = BatchedMPE(num_envs)
    start = time.perf_counter()
    for episode in range(episodes):
        batched.reset(seed=episode * num_envs)
        for t in range(25):
            batched.step(actions[episode, t])
    return {"mpe2_loop": mpe2_sps, "batched_torch": episodes * 25 * num_envs / (time.perf_counter() - start)}


def head_parameters(hidden: int = 64, n_agents: int = 3, n_actions: int = 5) -> dict[str, int]:
    """Output-layer parameters at mi_pg's default width: the joint head vs the N marginal heads."""
    return {"joint_head": (hidden + 1) * n_actions**n_agents, "marginal_heads": n_agents * (hidden + 1) * n_actions}


def table(results: list[dict], algos: list[str]) -> str:
    lines = [("| algorithm | return, greedy (mean ± std) | return, sampled | EPyMARL scale, at best | env steps "
             "| s / run | env steps/s |"), "|---|---|---|---|---|---|---|"]
    for algo in algos:
        runs = [r for r in results if r["algo"] == algo]
        greedy = [score(r["summary"])[0] for r in runs]
        sampled = [r["summary"]["decentralized_return_sampled"] for r in runs]
        spread = statistics.stdev(greedy) if len(greedy) > 1 else 0.0
        sampled_cell = "n/a" if None in sampled else f"{statistics.mean(sampled):.1f}"
        wall = statistics.mean(r["summary"]["wall_time_s"] for r in runs)
        steps = runs[0]["summary"]["env_steps"]
        lines.append(f"| {algo} | {statistics.mean(greedy):.1f} ± {spread:.1f}{score(runs[0]['summary'])[1]} | "
                     f"{sampled_cell} | {epymarl_scale_upper_bound(statistics.mean(greedy)):.0f} | {steps:,} | "
                     f"{wall:.0f} | {steps / wall:,.0f} |")
    return "\n".join(lines)


def report(saved: dict) -> str:
    results, speed, algos = saved["runs"], saved["speed"], list(dict.fromkeys(r["algo"] for r in saved["runs"]))
    seeds = sorted({r["seed"] for r in results})
    parts = [(f"simple_spread, every script at its defaults, seeds {seeds[0]}-{seeds[-1]}; final evaluation of the "
             f"executed policy (decentralized; jpg: joint), {saved['eval_episodes']} episodes. Reference policies: "
             f"uniform random {saved['reference']['random']:.1f}, always no-op {saved['reference']['noop']:.1f}."),
             "", table(results, algos), ""]
    parts.append(f"Environment speed (random actions, 128 copies, one thread): mpe2 stepped in a loop "
                 f"{speed['mpe2_loop']:,.0f} env steps/s; BatchedMPE {speed['batched_torch']:,.0f} env steps/s.")
    sps = {algo: statistics.mean(r["summary"]["env_steps"] / r["summary"]["wall_time_s"]
                                 for r in results if r["algo"] == algo) for algo in ("mi_pg", "ipg") if algo in algos}
    heads = head_parameters()
    cost = (f"mi_pg {sps['mi_pg']:,.0f} vs ipg {sps['ipg']:,.0f} env steps/s (training and evaluation), "
            if len(sps) == 2 else "")
    parts.append(f"The joint head (125 joint actions): {cost}output layer {heads['joint_head']:,} parameters "
                 f"vs {heads['marginal_heads']:,} for the three marginal heads.")
    published = "; ".join(f"{algo} {mean:.1f} ± {ci:.1f} (ours: >= {our_scale_lower_bound(mean):.1f})"
                          for algo, (mean, ci) in PUBLISHED.items())
    parts.append(f"Published (EPyMARL, Papoudakis et al. 2021, Table 3, Spread, parameter sharing, maximum "
                 f"returns, ± 95% CI over 5 seeds; 2M steps off-policy, 20M on-policy): {published}. Not the same "
                 f"reward: see `epymarl_scale_upper_bound` and `our_scale_lower_bound` in this file.")
    parts.append(f"\n{saved['footer']}\n")
    return "\n".join(parts)


def reference_returns(episodes: int = 1000) -> dict[str, float]:
    torch.manual_seed(0)
    env, returns = BatchedMPE(episodes), {}
    for name in ("random", "noop"):
        env.reset()
        total = torch.zeros(episodes)
        for _ in range(env.episode_length):
            actions = torch.randint(5, (episodes, 3)) if name == "random" else torch.zeros(episodes, 3, dtype=torch.long)
            total += env.step(actions)[2]
        returns[name] = total.mean().item()
    return returns


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=None,
                        help="variants ALGO or ALGO:FLAG=VALUE,... (default: every script in algos/)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: the game's (2M)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the saved JSON")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "simple_spread"),
                        help="results path without suffix: OUT.json (every run, saved as it finishes) and OUT.md")
    add_arguments(parser)
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        write_report(out, load_results(out.with_suffix(".json"), parser))
        return
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    algos = variants(args, parser, [a for a in available_algos() if ":" not in a])
    sweep = make_jobs(algos, [ENV_ID], list(range(1, args.seeds + 1)), common=common_flags(args, ("total_timesteps",)),
                      read_scalars=["charts/episodic_return"])  # the training curve, for benchmarks/figures.py
    results, outcome = run_from_args(sweep, args, parser, "benchmarks/simple_spread.py", out)
    if outcome.trained or "speed" not in results.extra:
        results.extra.update(speed=env_speed(), reference=reference_returns(),
                             eval_episodes=1000)  # the scripts' default --eval-episodes
        results.save()
    write_report(out, results)


def write_report(out: Path, results: Results) -> None:
    markdown = report({"runs": results.runs, **results.extra, "footer": results.footer})
    print(markdown)
    out.with_suffix(".md").write_text(markdown)


if __name__ == "__main__":
    main()
