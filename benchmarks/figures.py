"""The README's figures, from fresh in-process training runs and their TensorBoard logs.

    trap.png            coordination-2x2: the exact gradient field of J(p, q) (torch autograd through
                        envs.expected_payoff) and the trajectories (p_t, q_t) of ipg and mi_pg from p = q = 0.9
    mi_pg_schedule.png  one mi_pg run from that start: lambda_t, alpha_t, the KL, the total correlation, returns
    climbing_curves.png every script in algos/ on climbing (uniform start, defaults): training return over seeds
    signal_climbing_curves.png   the same on the private-signal game signal-climbing
    simple_spread_curves.png     MPE simple_spread: every script's greedy evaluation return over training, from the
                                 runs of benchmarks/simple_spread.py
                                 (benchmarks/results/simple_spread.json; run it first)
    simple_spread_epymarl_curves.png   the same for the 20M-step runs of
                                 `benchmarks/simple_spread.py --protocol epymarl`
                                 (benchmarks/results/simple_spread_epymarl.json)

    python benchmarks/figures.py                      # all six, into benchmarks/figures/ (~2 min on 2 cores)
    python benchmarks/figures.py --figures trap --trap-seeds 5
    python benchmarks/figures.py --ray-address auto   # the training runs on a running Ray cluster

The training runs go through benchmarks/sweep.py and are kept in runs/figures.json (--runs): drawing again
trains only the runs not there yet (or whose script's settings changed); --rerun trains them all again.
"""

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.matrix_games import available_algos
from benchmarks.simple_spread import IPPO
from benchmarks.sweep import ROOT, Results, add_arguments, make_job, run_from_args
from envs import expected_payoff, make_vec_env, resolve_payoff

FIGURES = {"trap": "trap.png", "schedule": "mi_pg_schedule.png", "climbing": "climbing_curves.png",
           "signal-climbing": "signal_climbing_curves.png", "simple_spread": "simple_spread_curves.png",
           "simple_spread_epymarl": "simple_spread_epymarl_curves.png"}
TRAP = ("coordination-2x2", 0.9)  # the trap's game and adversarial start (README, "The trap")
COLORS = {"ipg": "tab:red", "mi_pg": "tab:blue"}


# the TensorBoard tags each figure reads
TRAP_TAGS = ["policy/agent_0/action_0", "policy/agent_1/action_0"]
SCHEDULE_TAGS = ["charts/lambda", "charts/alpha", "losses/kl_joint_to_product", "charts/total_correlation",
                 "charts/episodic_return", "eval/decentralized_return_greedy"]
CURVE_TAGS = ["charts/episodic_return"]


def plot_trap(logs: dict, seeds: list[int], path: Path) -> None:
    env_id, init_prob = TRAP
    payoff = torch.tensor(resolve_payoff(env_id), dtype=torch.float32)

    def J(p, q):  # p, q: agent 0's and agent 1's probability of action 0
        return expected_payoff(payoff, [torch.stack([p, 1 - p]), torch.stack([q, 1 - q])])

    def field(lo: float, n: int):  # grid over [lo, 1]^2, J and its exact gradient there
        grid = torch.linspace(lo, 1, n)
        P, Q = torch.meshgrid(grid, grid, indexing="xy")
        dP, dQ = torch.func.vmap(torch.func.grad(J, argnums=(0, 1)))(P.flatten(), Q.flatten())
        return grid.numpy(), P, Q, torch.func.vmap(J)(P.flatten(), Q.flatten()).reshape(P.shape), \
            dP.reshape(P.shape).numpy(), dQ.reshape(P.shape).numpy()

    grid, P, Q, values, dP, dQ = field(0.0, 41)
    fig, ax = plt.subplots(figsize=(8, 7))
    filled = ax.contourf(P, Q, values, levels=np.linspace(-5, 10, 16), cmap="Greys", alpha=0.45)
    fig.colorbar(filled, ax=ax, shrink=0.8, label="expected payoff J(p, q)")
    ax.streamplot(grid, grid, dP, dQ, color=np.hypot(dP, dQ), cmap="Greens", density=1.1, linewidth=0.8)
    for p in (0, 1):
        for q in (0, 1):
            a0, a1 = 1 - p, 1 - q  # p = 1: agent 0 always plays action 0
            ax.annotate(f"J = {payoff[a0, a1]:g}: actions ({a0}, {a1})", (p, q), xytext=(0, 6 if q else -6),
                        textcoords="offset points", ha="right" if p else "left", va="bottom" if q else "top",
                        fontsize=9, fontweight="bold")
    inset = ax.inset_axes([0.1, 0.6, 0.3, 0.3])  # zoom on the start corner, where ipg stays
    _, Pz, Qz, _, dPz, dQz = field(0.85, 7)
    inset.quiver(Pz, Qz, dPz, dQz, color="tab:green", alpha=0.7)
    for axis in (ax, inset):
        axis.axvline(0.75, color="k", ls="--", lw=1)
        axis.axhline(0.75, color="k", ls="--", lw=1)
        for algo, color in COLORS.items():
            for i, seed in enumerate(seeds):
                run = logs[algo, env_id, init_prob, seed]
                p_t, q_t = (run[f"policy/agent_{k}/action_0"][1] for k in (0, 1))
                label = f"{algo}, seeds {seeds[0]}-{seeds[-1]}" if i == 0 and axis is ax else None
                axis.plot(p_t, q_t, color=color, lw=1.6, alpha=0.8, label=label, zorder=3)
                axis.plot(p_t[0], q_t[0], "o", color=color, ms=6, mec="k", zorder=4)
                axis.plot(p_t[-1], q_t[-1], "X", color=color, ms=10, mec="k", zorder=4)
    ax.text(0.76, 0.45, "p = 3/4", rotation=90, fontsize=8)
    ax.text(0.45, 0.76, "q = 3/4", fontsize=8)
    inset.set(xlim=(0.84, 1.01), ylim=(0.84, 1.01), xticks=[0.85, 0.9, 0.95, 1], yticks=[0.85, 0.9, 0.95, 1])
    inset.tick_params(labelsize=7)
    ax.indicate_inset_zoom(inset, edgecolor="0.3")
    ax.plot([], [], "o", color="0.5", mec="k", label="first logged point")
    ax.plot([], [], "X", color="0.5", mec="k", ms=10, label="end of training")
    ax.set(xlim=(-0.1, 1.1), ylim=(-0.1, 1.1), aspect="equal",
           xlabel="p = P(agent 0 plays action 0)", ylabel="q = P(agent 1 plays action 0)",
           title=f"{env_id}: gradient field of J(p, q) and training trajectories from p = q = {init_prob}\n"
                 "(ipg: the agents' policies; mi_pg: its product-of-marginals heads)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9, bbox_to_anchor=(0.98, 0.1))
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def plot_schedule(logs: dict, path: Path) -> None:
    env_id, init_prob = TRAP
    run = logs["mi_pg", env_id, init_prob, 1]
    optimum = float(resolve_payoff(env_id).max())
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    ax1.plot(*run["charts/lambda"], color="tab:purple", label="lambda_t (KL weight)")
    ax1.set_ylabel("lambda_t")
    twin = ax1.twinx()
    twin.plot(*run["charts/alpha"], color="tab:orange", label="alpha_t (weight of the product policy)")
    twin.set(ylabel="alpha_t", ylim=(-0.05, 1.05))
    ax1.legend(handles=ax1.get_lines() + twin.get_lines(), loc="upper left", fontsize=8)
    ax2.plot(*run["losses/kl_joint_to_product"], color="tab:green", label="KL(pi_jt || prod_i pi_i)")
    ax2.plot(*run["charts/total_correlation"], color="tab:brown", label="total correlation of pi_jt")
    ax2.set(yscale="log", ylabel="nats")
    ax2.legend(fontsize=8)
    ax3.plot(*run["charts/episodic_return"], color="0.4", lw=1, label="training return (acting policy pi_mix)")
    ax3.plot(*run["eval/decentralized_return_greedy"], "o-", color="tab:blue",
             label="decentralized greedy return (evaluation)")
    ax3.axhline(optimum, color="k", ls="--", lw=1, label=f"optimum {optimum:g}")
    ax3.set(ylabel="return", xlabel="env steps (log scale)", xscale="log")
    ax3.legend(fontsize=8, loc="center right")
    ax1.set_title(f"mi_pg on {env_id} from p = q = {init_prob}, seed 1")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_curves(curves: dict[str, list[tuple]], lines: dict[str, float], title: str, path: Path,
                ylabel: str = "training return") -> None:
    """One panel per algorithm: the return's mean over seeds and its min-max band.

    curves: {algo: [(steps, returns) for each seed]}; lines: horizontal references {label: value}.
    """
    algos = list(curves)
    cols = 4
    rows = -(-(len(algos) + 1) // cols)  # one panel spare, for the legend
    # constrained layout leaves room for the figure's title above the panels' titles
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True, squeeze=False,
                             layout="constrained")
    styles = ["--", ":", "-."]
    uneven = len({len(runs) for runs in curves.values()}) > 1  # then each title says its number of seeds
    for ax, algo in zip(axes.flat, algos):
        steps = np.asarray(curves[algo][0][0])
        if any(not np.array_equal(np.asarray(s), steps) for s, _ in curves[algo]):
            raise ValueError(f"{algo}: the seeds logged at different steps")
        returns = np.stack([np.asarray(values) for _, values in curves[algo]])
        script = algo.split(" ")[0]  # "mi_pg (v2)": mi_pg on the other physics keeps mi_pg's colour
        color = "tab:blue" if script == "mi_pg" else "tab:red" if script == "ipg" else "0.2"
        ax.fill_between(steps, returns.min(0), returns.max(0), color=color, alpha=0.25, lw=0)
        ax.plot(steps, returns.mean(0), color=color, lw=1.5)
        for style, value in zip(styles, lines.values()):
            ax.axhline(value, color="k", ls=style, lw=1)
        seeds = f" ({len(returns)} seed{'s' * (len(returns) > 1)})" if uneven else ""
        name = f"{algo}{seeds}"
        separator = "\n" if len(name) > 26 else ": "  # a long name gets a line of its own: titles must not run together
        ax.set_title(f"{name}{separator}ends at {returns[:, -1].mean():.1f}", fontsize=10)
    for ax in axes.flat[len(algos):]:
        ax.axis("off")
    spare = axes.flat[-1]
    spare.plot([], [], color="0.2", lw=1.5, label="mean over the seeds" if uneven else
               f"mean over {len(curves[algos[0]])} seeds")
    spare.fill_between([], [], [], color="0.2", alpha=0.25, label="min-max over seeds")
    for style, (label, value) in zip(styles, lines.items()):
        spare.plot([], [], color="k", ls=style, lw=1, label=f"{label} {value:.4g}")
    spare.legend(loc="center", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for index, ax in enumerate(axes.flat[:len(algos)]):
        if index + cols >= len(algos):  # no curve below it: its own x axis
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("env steps")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def simple_spread_curves(results: Path, env_steps: int | None = None) -> tuple[dict, dict]:
    """The evaluation curves in the summaries saved by benchmarks/simple_spread.py (its runs take hours, so they are
    not redone here): the executed policy's greedy return, 100 episodes every 50k env steps. env_steps: only the runs
    of that length (a figure's panels share their x axis)."""
    if not results.exists():
        raise SystemExit(f"{results} is missing: run `python benchmarks/simple_spread.py` first")
    saved = Results(results)
    runs = [run for run in saved.runs if env_steps is None or run["summary"]["env_steps"] == env_steps]
    # a panel title has room for "iql*", not for a long variant's flags: the k-th long variant of a script is labelled
    # with k stars, in the order of the rows of the results' Markdown table, which lists its flags
    stars = {}  # long variant -> its number of stars
    for variant in dict.fromkeys(run["algo"] for run in runs if len(run["algo"]) >= 30):
        stars[variant] = 1 + sum(other.split(":")[0] == variant.split(":")[0] for other in stars)
    curves = {}
    for run in runs:
        if run["algo"] == IPPO:  # mappo:independent_critic=True: its own name fits a panel title better
            label = "ippo"
        elif run["algo"] in stars:
            label = run["algo"].split(":")[0] + "*" * stars[run["algo"]]
        else:
            label = run["algo"]
        if run["env_id"] != "simple_spread":  # the other physics (simple_spread_v2) gets panels of its own
            label += f" ({run['env_id'].rsplit('_', 1)[-1]})"
        evaluations = run["summary"]["eval_curves"]
        executed = "decentralized" if run["summary"].get("decentralized", True) else "joint"
        curves.setdefault(label, []).append((evaluations["env_steps"], evaluations[f"{executed}_return_greedy"]))
    reference = {"uniform random policy": saved.extra["reference"]["random"],
                 "always no-op": saved.extra["reference"]["noop"]}
    return curves, reference


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", nargs="+", default=list(FIGURES), choices=list(FIGURES))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..N per script on the climbing and signal curves")
    parser.add_argument("--trap-seeds", type=int, default=3, help="seeds 1..N per script on the trap figure")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "figures"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "figures.json"),
                        help="where the training runs are kept (each saved as it finishes): drawing again, or after "
                             "an interruption, trains only what is missing (--rerun: everything)")
    add_arguments(parser, grid=False, cache=True)
    args = parser.parse_args()
    trap_seeds, seeds = list(range(1, args.trap_seeds + 1)), list(range(1, args.seeds + 1))
    climbing_algos = [a for a in available_algos() if ":" not in a]

    env_id, init_prob = TRAP
    jobs = []  # the schedule's run is also trap's mi_pg seed 1: the runner trains it once, with both sets of tags
    if "trap" in args.figures:
        jobs += [make_job(algo, env_id, seed, "p=0.9", init_prob, read_scalars=TRAP_TAGS)
                 for algo in COLORS for seed in trap_seeds]
    if "schedule" in args.figures:
        jobs.append(make_job("mi_pg", env_id, 1, "p=0.9", init_prob, read_scalars=SCHEDULE_TAGS))
    for game in ("climbing", "signal-climbing"):
        if game in args.figures:
            jobs += [make_job(algo, game, seed, read_scalars=CURVE_TAGS) for algo in climbing_algos for seed in seeds]
    started = time.perf_counter()
    logs = {}
    if jobs:
        results, _ = run_from_args(jobs, args, parser, "benchmarks/figures.py", Path(args.runs).with_suffix(""))
        logs = {(run["algo"], run["env_id"], run["init_prob"], run["seed"]):
                {tag: (np.array(steps), np.array(values)) for tag, (steps, values) in run["scalars"].items()}
                for run in results.runs}

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "trap" in args.figures:
        plot_trap(logs, trap_seeds, out / FIGURES["trap"])
    if "schedule" in args.figures:
        plot_schedule(logs, out / FIGURES["schedule"])
    for game in ("climbing", "signal-climbing"):
        if game in args.figures:
            env = make_vec_env(game, 1)
            lines = {"optimum": env.optimum}
            if hasattr(env, "common_knowledge_optimum"):
                lines["no signal named right (common knowledge only)"] = env.common_knowledge_optimum
            curves = {algo: [logs[algo, game, None, seed]["charts/episodic_return"] for seed in seeds]
                      for algo in climbing_algos}
            plot_curves(curves, lines, f"{game}, uniform start, default flags: training return (the behaviour "
                        "policy, exploration included)", out / FIGURES[game])
    if "simple_spread" in args.figures:
        curves, reference = simple_spread_curves(ROOT / "benchmarks" / "results" / "simple_spread.json")
        plot_curves(curves, reference, "simple_spread (MPE), 2M env steps: greedy evaluation return of the executed "
                    "policy (100 episodes every 50k env steps; * variants: simple_spread.md)",
                    out / FIGURES["simple_spread"], "evaluation return")
    if "simple_spread_epymarl" in args.figures:
        curves, reference = simple_spread_curves(ROOT / "benchmarks" / "results" / "simple_spread_epymarl.json",
                                                 env_steps=20_000_000)
        plot_curves(curves, reference, "simple_spread (MPE), 20M env steps (the paper's on-policy budget): greedy "
                    "evaluation return of the executed policy (* variants: simple_spread_epymarl.md)",
                    out / FIGURES["simple_spread_epymarl"], "evaluation return")
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} to {out} in "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
