"""MPE simple_spread: every script at its defaults, evaluated as the EPyMARL paper evaluates; the environment's
speed, and the cost of mi_pg's joint head.

Every run is evaluated as in Papoudakis et al. (2021): 100 episodes every 50,000 env steps (and at the end),
greedy and, for policies, sampled; the tables give the mean over seeds at the evaluation where it is highest (the
paper's "maximum returns") and at the final one, on our scale and on the paper's (envs/mpe.py: P = 3 G - 3 T - 2 C,
exact, from the collisions counted in the same episodes). The JSON keeps each run's summary, evaluation curves
included, which benchmarks/figures.py plots.

    python benchmarks/simple_spread.py                         # every script x 3 seeds at the defaults (2M steps)
    python benchmarks/simple_spread.py --protocol epymarl      # the paper's budgets: 20M on-policy, 2M off-policy,
                                                               # 5 seeds (and iql, vdn, qmix, maddpg, coma with
                                                               # --preset epymarl; iql, vdn, qmix also with
                                                               # --preset epymarl-rnn; coma at its defaults too),
                                                               # on the paper's physics (simple_spread_v2)
    python benchmarks/simple_spread.py --algos mi_pg ipg --seeds 2 --total-timesteps 500000
    python benchmarks/simple_spread.py --protocol epymarl --env-id simple_spread   # the same on mpe2's physics
    python benchmarks/simple_spread.py --report-only           # rebuild the Markdown from the JSON
    python benchmarks/simple_spread.py --ray-address auto      # on a running Ray cluster (docs/sweeps.md)

Runs go through benchmarks/sweep.py: each finished run is saved in the JSON at once, and running the same
command again resumes an interrupted sweep.

Returns here are the team reward summed over the 25 steps: minus the landmark-to-nearest-agent distances,
no collision penalty (envs/mpe.py); the paper's reward adds the collisions, and the summaries carry both.
"""

import argparse
import statistics
import sys
import time
import typing
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.matrix_games import available_algos
from benchmarks.sweep import (
    ROOT,
    Results,
    add_arguments,
    args_fields,
    load_results,
    make_jobs,
    run_from_args,
    variants,
)
from envs import MPE_ENV_IDS, BatchedMPE, make_mpe_env

ENV_ID = "simple_spread"  # the default game: mpe2's physics; simple_spread_v2 is the original MPE's (the paper's)

# Papoudakis et al. (2021), "Benchmarking Multi-Agent Deep Reinforcement Learning Algorithms in Cooperative Tasks"
# (NeurIPS Datasets and Benchmarks; EPyMARL), Table 3, MPE Spread, parameter sharing, "maximum returns": the
# evaluation during training at which the greedy return averaged over the 5 seeds is highest, and the mean +- 95%
# CI over the seeds at that evaluation (best_evaluation below); 2M env steps for off-policy methods,
# 20M for on-policy ones. Read from a secondary copy of the table (which says it was taken from the arXiv HTML
# rendering), not from the paper itself: check before citing. The paper ran the original MPE's physics, which
# --env-id simple_spread_v2 simulates (envs/mpe.py). The algorithms this project also has:
PUBLISHED = {"qmix": (-126.62, 2.96), "vdn": (-131.03, 1.85), "iql": (-132.63, 2.22), "mappo": (-133.54, 3.08),
             "ippo": (-133.86, 3.67), "maddpg": (-141.70, 1.74), "coma": (-204.31, 6.30)}
# this project's IPPO: algos/mappo.py with the critic V(o_i) (--independent-critic)
IPPO = "mappo:independent_critic=True"

# The paper's protocol: on-policy methods get 20M env steps, off-policy ones 2M; evaluation every 50k steps.
ON_POLICY = {"mi_pg", "ipg", "jpg", "mappo", "mackrl", "coma"}
# The scripts with a preset that the epymarl protocol runs at their defaults as well: COMA's results on the paper's
# physics are its defaults' (its preset passes the published number too, on mpe2's physics: docs/results.md).
AT_DEFAULTS_TOO = {"coma"}
EVAL_INTERVAL, EVAL_EPISODES = 50_000, 100
PROTOCOLS = {"defaults": {"seeds": 3, "out": "simple_spread", "env_id": ENV_ID},
             "epymarl": {"seeds": 5, "out": "simple_spread_epymarl", "env_id": "simple_spread_v2"}}
# two-sided 95% quantiles of Student's t by degrees of freedom, for the CI over seeds (mean +- t s / sqrt(n))
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def budget(variant: str, protocol: str, total_timesteps: int | None) -> int:
    """Env steps of one run: --total-timesteps if given; else the paper's (20M on-policy, 2M off-policy) under
    --protocol epymarl, the game's default (2M) under the defaults."""
    if total_timesteps is not None:
        return total_timesteps
    return 20_000_000 if protocol == "epymarl" and variant.split(":")[0] in ON_POLICY else 2_000_000


def run_flags(protocol: str, total_timesteps: int | None, cuda: bool):
    """variant -> the flags of its runs: the budget, and EPyMARL's evaluation (100 episodes every 50k steps)."""
    def flags(variant: str) -> dict:
        steps = budget(variant, protocol, total_timesteps)
        common = {"total_timesteps": steps, "num_evals": max(steps // EVAL_INTERVAL - 1, 0),
                  "eval_episodes": EVAL_EPISODES}
        return {**common, "cuda": True} if cuda else common
    return flags


def executed(summary: dict) -> tuple[str, str | None]:
    """The summary keys of the executed policy, greedy and sampled (None: no stochastic policy is deployed)."""
    kind = "decentralized" if summary.get("decentralized", True) else "joint"
    sampled = f"{kind}_return_sampled"
    return f"{kind}_return_greedy", sampled if summary.get(sampled) is not None else None


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval over seeds (Student's t; 0 for one seed)."""
    n = len(values)
    if n < 2:
        return values[0], 0.0
    return statistics.mean(values), T_95.get(n - 1, 1.96) * statistics.stdev(values) / n**0.5


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


def published(variant: str) -> tuple[float, float] | None:
    """The paper's number for a row: the script at its defaults or with --preset epymarl, with or without EPyMARL's
    recurrent agent, at the preset's width or at 128 units (use_rnn: True and 128 units are what EPyMARL's own
    record of the paper's hyperparameters, bedc593, gives IQL, VDN and QMIX; docs/algos/iql.md, deviation 8), or
    with --preset epymarl-rnn (one flag for the recurrent rows), and IQL's preset at the 2021 files' 64 units (the
    preset has 128); IPPO: mappo with --independent-critic."""
    if variant == IPPO:
        return PUBLISHED["ippo"]
    algo, _, flags = variant.partition(":")
    as_recorded = ("", "preset=epymarl", "preset=epymarl,recurrent=true",
                   "preset=epymarl,recurrent=true,hidden_size=128", "preset=epymarl-rnn")
    return PUBLISHED.get(algo) if flags in as_recorded or variant == "iql:preset=epymarl,hidden_size=64" else None


def protocol_variants(scripts: list[str]) -> list[str]:
    """The epymarl protocol's rows: EPyMARL's own configuration where a script has it as a preset (--preset epymarl),
    and where a script also has --preset epymarl-rnn (iql, vdn, qmix: EPyMARL's recurrent agent), that one too; the
    defaults of the scripts without a preset, and of those whose results on the paper's physics are their defaults'
    (AT_DEFAULTS_TOO)."""
    rows = []
    for variant in scripts:
        preset = args_fields(variant.split(":")[0]).get("preset")
        names = [name for name in typing.get_args(preset.type) if name != "none"] if preset else []
        presets = [f"{variant}:preset={name}" for name in names]
        rows += presets if presets and variant not in AT_DEFAULTS_TOO else [variant] + presets
    return rows


def best_evaluation(runs: list[dict], key: str) -> tuple[float, float, int]:
    """The paper's "maximum returns": the evaluation point (the same env step in every run) whose mean over the runs
    is highest, and that mean ± 95% CI over the runs at that point, with its env step. Not the mean of each run's own
    best, which picks a different point for each seed and so is never lower."""
    curves = [summary["eval_curves"] for summary in runs]
    points = min(len(curve["env_steps"]) for curve in curves)
    steps = curves[0]["env_steps"][:points]
    if any(curve["env_steps"][:points] != steps for curve in curves):
        raise ValueError(f"the runs of one row were evaluated at different env steps: {key}")
    at = [[curve[key][i] for curve in curves] for i in range(points)]
    best = max(range(points), key=lambda i: statistics.mean(at[i]))
    return *mean_ci(at[best]), steps[best]


def cell(runs: list[dict], key: str, best: bool) -> str:
    """mean ± 95% CI over the runs of the final summary[key], or at the paper's best evaluation point."""
    mean, ci = best_evaluation(runs, key)[:2] if best else mean_ci([summary[key] for summary in runs])
    return f"{mean:.1f} ± {ci:.1f}"


def each_runs_best(runs: list[dict], key: str) -> str:
    """mean ± 95% CI over the runs of each run's own maximum over training (this project's measure before the
    nineteenth session, a few points above the paper's)."""
    mean, ci = mean_ci([summary["max_over_training"][key] for summary in runs])
    return f"{mean:.1f} ± {ci:.1f}"


def table(results: list[dict], algos: list[str]) -> str:
    """One row per variant: returns as mean ± 95% CI over seeds at the best evaluation point (the paper's measure)
    and at the final evaluation, on our scale and on the paper's, and on the paper's scale the mean of each seed's
    own best as well."""
    lines = [("| algorithm | game | env steps | seeds | greedy, max (final) | sampled, max (final) "
              "| EPyMARL scale: greedy max | each seed's best | sampled max | published | colliding pair-steps "
              "| s / run | env steps/s |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for algo, env_id in dict.fromkeys((r["algo"], r["env_id"]) for r in results if r["algo"] in algos):
        runs = [r["summary"] for r in results if (r["algo"], r["env_id"]) == (algo, env_id)]
        greedy, sampled = executed(runs[0])
        pairs = [f"{cell(runs, key, True)} ({cell(runs, key, False)})" if key else "n/a" for key in (greedy, sampled)]
        theirs = [cell(runs, f"epymarl_return/{key}", True) if key else "n/a" for key in (greedy, sampled)]
        paper = published(algo)
        wall = statistics.mean(summary["wall_time_s"] for summary in runs)
        steps = runs[0]["env_steps"]
        collisions = statistics.mean(summary[f"colliding_pair_steps/{greedy}"] for summary in runs)
        lines.append(
            f"| {algo} | {env_id} | {steps:,} | {len(runs)} | {pairs[0]} "
            f"| {pairs[1]} | {theirs[0]} | {each_runs_best(runs, f'epymarl_return/{greedy}')} | {theirs[1]} "
            f"| {'' if paper is None else f'{paper[0]:.1f} ± {paper[1]:.1f}'} "
            f"| {collisions:.1f} | {wall:.0f} | {steps / wall:,.0f} |")
    return "\n".join(lines)


def report(saved: dict) -> str:
    results, speed, algos = saved["runs"], saved["speed"], list(dict.fromkeys(r["algo"] for r in saved["runs"]))
    seeds = sorted({r["seed"] for r in results})
    parts = [(f"simple_spread, seeds {seeds[0]}-{seeds[-1]}, {saved.get('protocol_text', '')}: the executed policy "
              f"(decentralized; jpg: joint) evaluated on {EVAL_EPISODES} episodes every {EVAL_INTERVAL:,} env steps "
              f"and at the end, greedy and sampled. Each cell: mean ± 95% CI over seeds (Student's t) at the "
              f"evaluation point where the mean over seeds is highest (the EPyMARL paper's maximum returns: one "
              f"point for all seeds) and, in brackets, at the final evaluation; \"each seed's best\": the mean ± 95% "
              f"CI of each seed's own maximum over training, the measure of this project's tables before the "
              f"nineteenth session, never lower. Our scale: the "
              f"team reward summed over the episode (reference policies on the 3-agent game: uniform random "
              f"{saved['reference']['random']:.1f}, always no-op {saved['reference']['noop']:.1f}); "
              f"EPyMARL scale: the paper's return of the same "
              f"episodes, 3 G - 75 - 2 C with C the colliding pair-steps (envs/mpe.py; N G - 25 N - 2 C in a row with "
              f"num_agents=N, N agents and N landmarks, which has no published number). Published: Papoudakis et al. "
              f"(2021), Table 3, Spread, parameter sharing, maximum returns, mean ± 95% CI over 5 seeds, 2M env steps "
              f"off-policy and 20M on-policy (read from a secondary copy of the table; check before citing), measured "
              f"on the original MPE's physics: game simple_spread_v2 here; simple_spread is mpe2's, where an action "
              f"moves the agent one step later (envs/mpe.py). {IPPO} is IPPO."),
             "", table(results, algos), ""]
    parts.append(f"Environment speed (random actions, 128 copies, one thread): mpe2 stepped in a loop "
                 f"{speed['mpe2_loop']:,.0f} env steps/s; BatchedMPE {speed['batched_torch']:,.0f} env steps/s.")
    # the joint head's cost in time: mi_pg against ipg where both make one plain update per batch (ipg's only kind;
    # mi_pg's simple_spread default is 2 PPO epochs), exact joint head
    like_ipg = {"mi_pg": [r for r in results if r["algo"].split(":")[0] == "mi_pg"
                          and r["settings"].get("update_epochs") == 1 and r["settings"].get("joint_head") == "exact"],
                "ipg": [r for r in results if r["algo"] == "ipg"]}
    sps = {algo: statistics.mean(r["summary"]["env_steps"] / r["summary"]["wall_time_s"] for r in runs)
           for algo, runs in like_ipg.items() if runs}
    heads = head_parameters()
    cost = (f"mi_pg {sps['mi_pg']:,.0f} vs ipg {sps['ipg']:,.0f} env steps/s (training and evaluation, one update "
            "per batch for both), " if len(sps) == 2 else "")
    parts.append(f"The joint head of the 3-agent game (125 joint actions): {cost}output layer {heads['joint_head']:,} "
                 f"parameters vs {heads['marginal_heads']:,} for the three marginal heads.")
    parts.append(f"\n{saved['footer']}\n")
    return "\n".join(parts)


def reference_returns(episodes: int = 1000) -> dict[str, float]:
    torch.manual_seed(0)
    env, returns = BatchedMPE(episodes), {}
    for name in ("random", "noop"):
        env.reset()
        total = torch.zeros(episodes)
        for _ in range(env.episode_length):
            actions = (torch.randint(5, (episodes, 3)) if name == "random"
                       else torch.zeros(episodes, 3, dtype=torch.long))
            total += env.step(actions)[2]
        returns[name] = total.mean().item()
    return returns


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="defaults",
                        help="defaults: every script at 2M steps, 3 seeds; epymarl: the paper's budgets (20M env steps "
                             "for the on-policy scripts, 2M for the off-policy ones) and 5 seeds")
    parser.add_argument("--algos", nargs="+", default=None,
                        help="variants ALGO or ALGO:FLAG=VALUE,... (default: every script in algos/, and IPPO)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 1..N (default: the protocol's, 3 or 5)")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="env steps of every run (default: the protocol's budget)")
    parser.add_argument("--env-id", choices=MPE_ENV_IDS, default=None,
                        help="the game: simple_spread (mpe2's physics) or simple_spread_v2 (the original MPE's, on "
                             "which the paper measured; envs/mpe.py); default: the protocol's, simple_spread under "
                             "the defaults and simple_spread_v2 under epymarl")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the saved JSON")
    parser.add_argument("--out", default=None,
                        help="results path without suffix: OUT.json (every run, saved as it finishes) and OUT.md "
                             "(default: benchmarks/results/simple_spread, or simple_spread_epymarl)")
    add_arguments(parser)
    args = parser.parse_args()
    protocol = PROTOCOLS[args.protocol]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / protocol["out"]
    if args.report_only:
        write_report(out, load_results(out.with_suffix(".json"), parser))
        return
    seeds = protocol["seeds"] if args.seeds is None else args.seeds
    if seeds < 1:
        parser.error(f"--seeds must be >= 1, got {seeds}")
    if args.total_timesteps is not None and args.total_timesteps < 1:
        parser.error(f"--total-timesteps must be >= 1, got {args.total_timesteps}")
    scripts = [a for a in available_algos() if ":" not in a] + [IPPO]
    if args.protocol == "epymarl":
        scripts = protocol_variants(scripts)
    algos = variants(args, parser, scripts)
    sweep = make_jobs(algos, [args.env_id or protocol["env_id"]], list(range(1, seeds + 1)),
                      common=run_flags(args.protocol, args.total_timesteps, args.cuda))
    results, outcome = run_from_args(sweep, args, parser, "benchmarks/simple_spread.py", out)
    budgets = sorted({budget(a, args.protocol, args.total_timesteps) for a in algos})
    text = (f"{' or '.join(f'{b:,}' for b in budgets)} env steps per run"
            + (" (the paper's budgets: 20M on-policy, 2M off-policy)" if args.protocol == "epymarl"
               and args.total_timesteps is None else ""))
    if outcome.trained or "speed" not in results.extra or results.extra.get("protocol_text") != text:
        results.extra.update(speed=env_speed(), reference=reference_returns(), protocol_text=text)
        results.save()
    write_report(out, results)


def write_report(out: Path, results: Results) -> None:
    markdown = report({"runs": results.runs, **results.extra, "footer": results.footer})
    print(markdown)
    out.with_suffix(".md").write_text(markdown)


if __name__ == "__main__":
    main()
