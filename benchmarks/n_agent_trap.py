"""The N-agent trap (envs/n_agent_trap.py): why mi_pg loses the joint head's escape from N = 4 agents on, and the fix.

Two parts, each writing to benchmarks/results/ (the runs as JSON, saved as they finish, resumed when re-run):

    python benchmarks/n_agent_trap.py diagnose     # N = 5, p = 0.9, seeds 1-3: the training curves behind the figure
                                                   # benchmarks/figures/n_agent_trap.png (n_agent_trap_diagnosis.json)
    python benchmarks/n_agent_trap.py scale        # N = 2..8 x 2 actions, both starts: seeds at the optimum per
                                                   # algorithm and N, wall time per run, the joint head's size
                                                   # (n_agent_trap.json and .md)
    python benchmarks/n_agent_trap.py scale --agents 2 3 4 5 --actions 3 --seeds 10 --add
    python benchmarks/n_agent_trap.py diagnose --report-only     # redraw the figure from the saved runs
    python benchmarks/n_agent_trap.py scale --algos mi_pg:joint_head=autoregressive --seeds 3 --add
    python benchmarks/n_agent_trap.py scale \
        --algos "mi_pg:joint_head=exact,lambda_max=0,alpha_start=1.0,alpha_end=1.0" \
        "mi_pg:joint_head=autoregressive,lambda_max=0,alpha_start=1.0,alpha_end=1.0" --agents 2 3 --starts p=0.9 \
        --seeds 5 --policy joint --out benchmarks/results/n_agent_trap_joint_learner
                                                   # either head alone as a joint learner (no KL, alpha held at 0
                                                   # throughout): the joint head's own escape
    python benchmarks/n_agent_trap.py cost         # mi_pg's exact against its autoregressive joint head, N = 4..16:
                                                   # wall time and peak memory of a run, the head's size
                                                   # (n_agent_trap_cost.json and .md)
    python benchmarks/n_agent_trap.py cost --game simple_spread   # the same on simple_spread with N = 3..16 agents
                                                   # (5^N joint actions; n_agent_trap_cost_simple_spread.json, .md)

The diagnosis reads mi_pg's own TensorBoard logs (charts/joint_prob_of_best, charts/product_prob_of_best,
losses/kl_joint_to_product, grad_norm_joint_head/*, charts/lambda, charts/alpha). jpg logs no such tag, so its joint
policy's probability of the optimum is recorded here, from the policy it samples its rollouts from (a subclass of
jpg's JointActor that notes pi_jt(a* | s) at every rollout step; training is unchanged).
"""

import argparse
import json
import math
import multiprocessing
import resource
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sweep import (
    ROOT,
    Results,
    add_arguments,
    load_results,
    make_job,
    run_from_args,
    run_key,
    run_one,
    settings,
    variants,
)
from envs import N_AGENT_TRAP_ID

FIXED = "mi_pg:kl_to_marginals_only=true"
DIAGNOSIS_ALGOS = ["jpg", "mi_pg", "mi_pg:lambda_max=0", FIXED]
SCALE_ALGOS = ["mi_pg", FIXED, "jpg"]
STARTS = {"uniform": None, "p=0.9": 0.9}
TAGS = ["charts/joint_prob_of_best", "charts/product_prob_of_best", "charts/lambda", "charts/alpha",
        "losses/kl_joint_to_product", "grad_norm_joint_head/kl", "grad_norm_joint_head/policy",
        "grad_norm_joint_head/entropy"]
RESULTS, FIGURES = ROOT / "benchmarks" / "results", ROOT / "benchmarks" / "figures"


def score(summary: dict, policy: str = "executed") -> float:
    """The greedy return of the executed policy (the decentralized one, or jpg's joint one) or, with policy "joint",
    of the joint policy (mi_pg's joint head)."""
    if policy == "joint" or not summary.get("decentralized", True):
        return summary["joint_return_greedy"]
    return summary["decentralized_return_greedy"]


# ============================ the diagnosis: N = 5, training curves ============================
@contextmanager
def jpg_recorder(best: int):
    """While open, jpg's rollouts note pi_jt(a* | s) of their first game at every step, in the list it yields."""
    from algos import jpg

    trace, original = [], jpg.JointActor

    class Recorded(original):
        def forward(self, state):
            log_probs = super().forward(state)
            if not torch.is_grad_enabled() and len(state) == self.rollout_games:  # a rollout step, not the update
                trace.append(log_probs[0, best].exp().item())
            return log_probs

    jpg.JointActor = Recorded
    try:
        yield trace, Recorded
    finally:
        jpg.JointActor = original


def diagnose_one(job: dict) -> dict:
    """One run of the diagnosis in this process, with the curves the figure needs under record['scalars']."""
    if not job["algo"].startswith("jpg"):
        return {**job, "settings": settings(job), **run_one(job)}
    n = job["common"]["num_agents"]
    with jpg_recorder(best=2**n - 1) as (trace, recorded):  # all on action 1: the last flat index
        recorded.rollout_games = 128  # jpg's default --num-envs; evaluations use --eval-episodes games
        record = run_one({**job, "read_scalars": []})
    steps = [128 * (u + 1) for u in range(len(trace))]
    return {**job, "settings": settings(job), **record, "scalars": {"charts/joint_prob_of_best": [steps, trace]}}


def diagnose(args, parser) -> None:
    path = RESULTS / "n_agent_trap_diagnosis.json"
    if args.report_only:
        results = load_results(path, parser)
    else:
        results = Results(path)
        done = results.index()
        jobs = [make_job(spec, N_AGENT_TRAP_ID, seed, "p=0.9", 0.9, {"num_agents": args.agents[0]},
                         TAGS if spec.startswith("mi_pg") else [])
                for spec in variants(args, parser, DIAGNOSIS_ALGOS) for seed in range(1, args.seeds + 1)]
        keys = [run_key(job) for job in jobs]
        for job, key in zip(jobs, keys):
            if key in done and not args.rerun:
                continue
            record = diagnose_one(job)
            record.pop("read_scalars", None)
            results.put(record, keys)
            results.save()
            print(f"{job['algo']:34s} seed {job['seed']}: executed greedy {score(record['summary']):5.1f}", flush=True)
    plot_diagnosis(results.runs, FIGURES / "n_agent_trap.png")
    markdown = diagnosis_numbers(results.runs) + "\n"
    print(markdown)
    path.with_suffix(".md").write_text(markdown)


def curve(run: dict, tag: str) -> tuple[list, list]:
    steps, values = run["scalars"][tag]
    return steps, values


def first_step(run: dict, tag: str, above: float) -> int | None:
    """The first logged env step at which `tag` exceeds `above` (None: never)."""
    return next((s for s, v in zip(*curve(run, tag)) if v > above), None)


def diagnosis_numbers(runs: list[dict]) -> str:
    """The numbers the docs quote: per run, the executed return, the joint head's P(a*) at a few steps, when the
    product first passes 0.5, and (mi_pg) the weighted pulls lambda_t ‖∇KL‖ and c_H ‖∇H‖ on the joint head."""
    header = ("| variant | seed | executed return | joint head P(a*) at 1.3k / 2.6k / 6.4k / 64k steps "
              "| product P(a*) > 0.5 from step "
              "| pulls on the joint head, lambda_t ‖∇KL‖ : c_H ‖∇H‖, at 2.6k / 6.4k steps |")
    lines = [header, "|---|---|---|---|---|---|"]
    for run in runs:
        steps, probs = curve(run, "charts/joint_prob_of_best")
        at = [min(range(len(steps)), key=lambda i: abs(steps[i] - s)) for s in (1280, 2560, 6400, steps[-1])]
        pulls = ""
        if "grad_norm_joint_head/kl" in run["scalars"]:
            kl, ent, lam = (curve(run, t)[1] for t in ("grad_norm_joint_head/kl", "grad_norm_joint_head/entropy",
                                                         "charts/lambda"))
            c_h = run["settings"]["ent_coef"]
            pulls = " / ".join(f"{lam[i] * kl[i]:.1e} : {c_h * ent[i]:.1e}" for i in at[1:3])
        product = "n/a (no marginals)"
        if "charts/product_prob_of_best" in run["scalars"]:
            product = first_step(run, "charts/product_prob_of_best", 0.5) or "never"
        lines.append(f"| {run['algo']} | {run['seed']} | {score(run['summary']):.0f} | "
                     f"{' / '.join(f'{probs[i]:.1e}' for i in at)} | {product} | {pulls} |")
    return "\n".join(lines)


def plot_diagnosis(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"jpg": "tab:green", "mi_pg": "tab:red", "mi_pg:lambda_max=0": "tab:gray", FIXED: "tab:blue"}
    labels = {"jpg": "jpg (joint agent)", "mi_pg": "mi_pg (default: two-way KL)",
              "mi_pg:lambda_max=0": "mi_pg, no KL (lambda_max 0)", FIXED: "mi_pg --kl-to-marginals-only"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    runs = [run for run in runs if run["algo"] in colors]  # the table lists any other variant run
    for run in runs:
        color, label = colors[run["algo"]], labels[run["algo"]]
        first = run["seed"] == min(r["seed"] for r in runs if r["algo"] == run["algo"])
        axes[0].plot(*curve(run, "charts/joint_prob_of_best"), color=color, lw=1, label=label if first else None)
        if "charts/product_prob_of_best" in run["scalars"]:
            axes[1].plot(*curve(run, "charts/product_prob_of_best"), color=color, lw=1, label=label if first else None)
        if run["algo"] == "mi_pg":  # the pulls on the joint head, each term weighted as in the loss
            steps = curve(run, "charts/lambda")[0]
            lam = curve(run, "charts/lambda")[1]
            kl = [x * y for x, y in zip(lam, curve(run, "grad_norm_joint_head/kl")[1])]
            ent = [run["settings"]["ent_coef"] * x for x in curve(run, "grad_norm_joint_head/entropy")[1]]
            pg = curve(run, "grad_norm_joint_head/policy")[1]
            axes[2].plot(steps, kl, color="tab:red", lw=1, label="lambda_t ‖∇KL‖ (default)" if first else None)
            axes[2].plot(steps, ent, color="tab:orange", lw=1, label="c_H ‖∇H‖" if first else None)
            axes[2].plot(steps, pg, color="tab:purple", lw=1, label="‖∇ policy loss‖" if first else None)
    for ax, title in zip(axes, ["joint head: P(optimal joint action)",
                                "product of the marginals: P(optimal joint action)",
                                "mi_pg (default): pulls on the joint head's parameters"]):
        ax.set_yscale("log")
        ax.set_xlabel("env steps")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right" if ax is not axes[2] else "center right")
    axes[0].set_ylim(1e-12, 2)
    axes[1].set_ylim(1e-40, 2)
    twin = axes[2].twinx()
    mi = next((r for r in runs if r["algo"] == "mi_pg"), None)
    if mi is not None:
        twin.plot(*curve(mi, "charts/lambda"), color="black", ls="--", lw=1, label="lambda_t")
        twin.plot(*curve(mi, "charts/alpha"), color="black", ls=":", lw=1, label="alpha_t")
        twin.set_ylabel("lambda_t (0-5), alpha_t (0-1)")
        twin.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"n-agent-trap, N = {runs[0]['common']['num_agents']}, 2 actions, start p = 0.9, seeds 1-"
                 f"{max(r['seed'] for r in runs)}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


# ============================ the scaling table ============================
def scale(args, parser) -> None:
    out = Path(args.out)
    if args.report_only:
        results = load_results(out.with_suffix(".json"), parser)
    else:
        algos = variants(args, parser, SCALE_ALGOS)
        jobs = [make_job(spec, N_AGENT_TRAP_ID, seed, start, STARTS[start], {"num_agents": n, "num_actions": k})
                for start in args.starts for k in args.actions for n in args.agents for spec in algos
                if not (STARTS[start] is not None and spec.split(":")[0] in ("iql", "vdn", "qmix", "qtran"))
                for seed in range(1, args.seeds + 1)]
        results, _ = run_from_args(jobs, args, parser, "benchmarks/n_agent_trap.py", out)
    markdown = scale_report(results.runs, args.policy)
    print(markdown)
    out.with_suffix(".md").write_text(markdown)


def scale_report(runs: list[dict], policy: str = "executed") -> str:
    algos = list(dict.fromkeys(r["algo"] for r in runs))
    sections = []
    scored = ("executed greedy policy: decentralized; jpg: joint" if policy == "executed" else
              "the joint policy's greedy return, not the executed policy's")
    for k in sorted({r["common"]["num_actions"] for r in runs}):
        ns = sorted({r["common"]["num_agents"] for r in runs if r["common"]["num_actions"] == k})
        title = f"{k} actions per agent: seeds at the optimum ({scored}), and the median wall seconds per run\n"
        lines = [title,
                 "| algorithm | start | " + " | ".join(f"N = {n}" for n in ns) + " |", "|---|---|" + "---|" * len(ns)]
        for spec in algos:
            for start in STARTS:
                cells = []
                for n in ns:
                    group = [r for r in runs if r["algo"] == spec and r["start"] == start
                             and r["common"] == {"num_agents": n, "num_actions": k}]
                    hits = sum(math.isclose(score(r["summary"], policy), r["summary"]["optimum"]) for r in group)
                    wall = statistics.median(r["summary"]["wall_time_s"] for r in group) if group else 0
                    cells.append(f"{hits}/{len(group)} ({wall:.0f} s)" if group else "")
                if any(cells):
                    lines.append(f"| {spec} | {start} | " + " | ".join(cells) + " |")
        lines.append("| joint head outputs (K^N) | | " + " | ".join(f"{k**n:,}" for n in ns) + " |")
        if any("joint_head=autoregressive" in r["algo"] for r in runs if r["common"]["num_actions"] == k):
            lines.append("| autoregressive head outputs (K N) | | " + " | ".join(f"{k * n}" for n in ns) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


# ============================ the cost of the joint head: exact against autoregressive ============================
HEADS = ["exact", "autoregressive"]


def cost_one(job: dict) -> dict:
    """One run (run_one) in a fresh process: its summary, the process's peak resident memory and how much of it the
    run added, and the size of mi_pg's joint head (parameters, outputs) for the run's game."""
    from algos import mi_pg

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; torch and the script imported
    summary = run_one(job)["summary"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n, head = job["common"]["num_agents"], job["algo"].split("joint_head=")[1]
    k = COST_GAMES[job["env_id"]]["actions"]
    network = {"exact": mi_pg.JointHead, "autoregressive": mi_pg.AutoregressiveJointHead}[head](n, [k] * n, 64, None)
    outputs = k**n if head == "exact" else k * n
    return {**job, "settings": settings(job), "summary": summary, "peak_rss_mb": peak / 1024,
            "run_rss_mb": (peak - before) / 1024, "head_params": sum(p.numel() for p in network.parameters()),
            "head_outputs": outputs}


# per game: actions per agent, the flags of every cost run, its results file, and the table's title
COST_GAMES = {
    N_AGENT_TRAP_ID: {
        "actions": 2, "flags": {"num_actions": 2}, "file": "n_agent_trap_cost",
        "title": "mi_pg on n-agent-trap, 2 actions, uniform start, seed 1, {steps:,} env steps (default budget "
                 "64,000), 128 games per batch, 1,000 evaluation episodes x 11 evaluations"},
    "simple_spread": {
        "actions": 5, "flags": {"num_evals": 0, "eval_episodes": 100}, "file": "n_agent_trap_cost_simple_spread",
        "title": "mi_pg on simple_spread with N agents and N landmarks (--num-agents), seed 1, {steps:,} env steps "
                 "(128 games x 25 steps per batch, 2 PPO epochs: the game's defaults), one evaluation of 100 episodes "
                 "at the end"},
}
EXACT_LIMIT = 2**16  # mi_pg refuses a larger exact head (--joint-head exact: one output per joint action)


def cost(args, parser) -> None:
    game = COST_GAMES[args.game]
    path = RESULTS / f"{game['file']}.json"
    if args.report_only:
        runs = json.loads(load_results(path, parser).path.read_text())["runs"]
    else:
        runs = []
        for n in args.agents:
            for head in HEADS:
                if head == "exact" and game["actions"] ** n > EXACT_LIMIT:
                    continue  # the table says why the cell is empty
                job = make_job(f"mi_pg:joint_head={head}", args.game, 1, "uniform", None,
                               {"num_agents": n, **game["flags"], "total_timesteps": args.total_timesteps})
                # a new process: its own peak memory
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
                    record = fresh.submit(cost_one, job).result()
                record.pop("read_scalars", None)
                runs.append(record)
                path.write_text(json.dumps({"runs": runs}, indent=1))
                print(f"N = {n:2d} {head:14s} {record['summary']['wall_time_s']:6.1f} s  "
                      f"peak {record['peak_rss_mb']:6.0f} MB (run {record['run_rss_mb']:+.0f} MB)  "
                      f"head {record['head_params']:,} parameters", flush=True)
    markdown = cost_report(runs) + "\n"
    print(markdown)
    path.with_suffix(".md").write_text(markdown)


def cost_report(runs: list[dict]) -> str:
    game = COST_GAMES[runs[0]["env_id"]]
    ns = sorted({r["common"]["num_agents"] for r in runs})
    title = (game["title"].format(steps=runs[0]["common"]["total_timesteps"]) + ": wall seconds per run, peak "
             "resident memory of the process (and what the run added to it after the imports), the joint head's "
             "parameters and outputs")
    if any(game["actions"] ** n > EXACT_LIMIT for n in ns):
        title += f"; no exact head beyond {EXACT_LIMIT:,} joint actions (mi_pg refuses it)"
    lines = [title + "\n",
             "| joint head | | " + " | ".join(f"N = {n}" for n in ns) + " |", "|---|---|" + "---|" * len(ns)]
    for head in HEADS:
        by_n = {r["common"]["num_agents"]: r for r in runs if r["algo"].endswith(head)}
        rows = [("wall s", lambda r: f"{r['summary']['wall_time_s']:.1f}"),
                ("peak MB (run +MB)", lambda r: f"{r['peak_rss_mb']:.0f} (+{r['run_rss_mb']:.0f})"),
                ("parameters", lambda r: f"{r['head_params']:,}"), ("outputs", lambda r: f"{r['head_outputs']:,}")]
        for label, cell in rows:
            lines.append(f"| {head} | {label} | " + " | ".join(cell(by_n[n]) if n in by_n else "" for n in ns) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["diagnose", "scale", "cost"])
    parser.add_argument("--algos", nargs="+", default=None, help="variants ALGO or ALGO:FLAG=VALUE,...")
    parser.add_argument("--agents", nargs="+", type=int, default=None,
                        help="numbers of agents (default: 5 for diagnose, 2..8 for scale, 4 8 12 16 for cost, and "
                             "3 4 5 6 8 12 16 for cost --game simple_spread)")
    parser.add_argument("--actions", nargs="+", type=int, default=[2], help="actions per agent (scale)")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS), help="(scale)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 1..S (default: 3 for diagnose, 10 for scale)")
    parser.add_argument("--report-only", action="store_true", help="tables and figure from the saved runs only")
    parser.add_argument("--policy", choices=["executed", "joint"], default="executed",
                        help="scale: count the seeds at the optimum by the executed policy's greedy return (default) or"
                             " by the joint policy's (mi_pg's joint head, e.g. with --lambda-max 0 as a joint learner)")
    parser.add_argument("--out", default=str(RESULTS / "n_agent_trap"), help="scale: OUT.json and OUT.md")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="cost: env steps per run (default 12,800 on n-agent-trap = 100 updates, 32,000 on "
                             "simple_spread = 10 updates; what is measured is the cost)")
    parser.add_argument("--game", choices=list(COST_GAMES), default=N_AGENT_TRAP_ID,
                        help="cost: the game (simple_spread takes --num-agents too: N agents, N landmarks)")
    add_arguments(parser)
    args = parser.parse_args()
    cost_agents = [4, 8, 12, 16] if args.game == N_AGENT_TRAP_ID else [3, 4, 5, 6, 8, 12, 16]
    args.agents = args.agents or {"diagnose": [5], "scale": list(range(2, 9)), "cost": cost_agents}[args.part]
    args.total_timesteps = args.total_timesteps or (12_800 if args.game == N_AGENT_TRAP_ID else 32_000)
    args.seeds = args.seeds or (3 if args.part == "diagnose" else 10)
    if args.seeds < 1 or min(args.agents) < 2 or min(args.actions) < 2:
        parser.error("--seeds must be >= 1, --agents and --actions >= 2")
    {"diagnose": diagnose, "scale": scale, "cost": cost}[args.part](args, parser)


if __name__ == "__main__":
    main()
