"""Every algorithm x every registered matrix game x N seeds, from a uniform and from the adversarial start.

Prints a Markdown table and writes it (with the raw per-seed numbers as JSON) to benchmarks/results/:
mean ± std and min decentralized greedy return, seeds at the optimum, env steps per run, median wall
seconds per run (training and evaluation, in-process), and the end-to-end seconds of one `python algos/<algo>.py`
(torch import included).

    python benchmarks/matrix_games.py                          # everything (the README's table)
    python benchmarks/matrix_games.py --algos mi_pg ipg --seeds 3 --out /tmp/mine
    python benchmarks/matrix_games.py --algos mi_pg ipg --episode-length 25 --total-timesteps 1600000 \
        --games climbing penalty --starts uniform --seeds 5 --out benchmarks/results/matrix_games_T25
    python benchmarks/matrix_games.py --algos mi_pg --grid lambda_max=1,5 learning_rate=1e-2,3e-3 --out /tmp/grid
    python benchmarks/matrix_games.py --ray-address auto       # on a running Ray cluster (docs/sweeps.md)

Runs go through benchmarks/sweep.py: each finished run is saved in OUT.json at once, and running the same
command again resumes an interrupted sweep (the runs already saved are not trained again).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sweep import (
    ROOT,
    Results,
    add_arguments,
    common_flags,
    load_results,
    make_jobs,
    parse_variant,
    run_from_args,
    scripts,
    variants,
)
from envs import PRIVATE_GAMES, REGISTRY

GAMES = list(REGISTRY) + list(PRIVATE_GAMES)  # every named game; --games picks among them
# A seed is "at the optimum" when its return is within this of it. Matrix games: exact (their greedy returns
# are deterministic). Private-signal games: the return is an average over --eval-episodes (1000) random signal
# draws, with a standard error of about 0.11 at the defaults (b = 5, K = 2, two agents), so 0.25 is about 2 of them.
OPTIMUM_TOLERANCE = {game: 0.25 for game in PRIVATE_GAMES}


def at_optimum(value: float, optimum: float, env_id: str) -> bool:
    return value >= optimum - OPTIMUM_TOLERANCE.get(env_id, 1e-6)

# mi_pg first, then the baselines; a name with ":" is a variant (an ablation) with fixed flag values.
PREFERRED_ORDER = ["mi_pg", "mi_pg:lambda_max=0", "ipg", "jpg", "coma", "maddpg", "mappo", "mackrl",
                   "iql", "vdn", "qmix", "qtran"]
STARTS = {"uniform": None, "p=0.9": 0.9}


def available_algos() -> list[str]:
    known = [a for a in PREFERRED_ORDER if a.split(":")[0] in scripts()]
    return known + sorted(set(scripts()) - {a.split(":")[0] for a in known})


def cli_seconds(spec: str, common: dict) -> float:
    """Wall seconds of one coordination-2x2 run from the shell, python start-up and torch import included."""
    algo, overrides = parse_variant(spec)
    flags = [f"--{k.replace('_', '-')}" if v is True else f"--no-{k.replace('_', '-')}" if v is False
             else f"--{k.replace('_', '-')}={v}" for k, v in {**common, **overrides}.items()]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "algos" / f"{algo}.py"), "--quiet", *flags],
                       cwd=tmp, check=True, capture_output=True)
        return time.perf_counter() - start


def score(summary: dict) -> tuple[float, str]:
    """The executed policy's greedy return; for a non-decentralized method (jpg) the joint policy's."""
    if summary.get("decentralized", True):
        return summary["decentralized_return_greedy"], ""
    return summary["joint_return_greedy"], " (joint)"


def overview(results: list[dict], algos: list[str]) -> str:
    """One row per algorithm: seeds at the optimum for every game and start."""
    columns = [(env_id, start) for env_id in GAMES for start in STARTS
               if any(r["env_id"] == env_id and r["start"] == start for r in results)]
    lines = ["| algorithm | " + " | ".join(f"{env_id}, {start}" for env_id, start in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for spec in algos:
        cells = []
        for env_id, start in columns:
            runs = [r for r in results if r["algo"] == spec and r["env_id"] == env_id and r["start"] == start]
            optimum = runs[0]["summary"]["optimum"] if runs else None
            hits = sum(at_optimum(score(r["summary"])[0], optimum, env_id) for r in runs)
            cells.append(f"{hits}/{len(runs)}" if runs else "n/a")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict], algos: list[str], cli: dict[str, float]) -> str:
    lines = [
        ("| algorithm | game | start | return (mean ± std) | min return | seeds at optimum | env steps "
        "| median s / run | env steps/s | s from shell |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in algos:
        for env_id in GAMES:
            for start in STARTS:
                runs = [r for r in results if r["algo"] == spec and r["env_id"] == env_id and r["start"] == start]
                if not runs:
                    continue
                returns = [score(r["summary"])[0] for r in runs]
                note = score(runs[0]["summary"])[1]
                optimum = runs[0]["summary"]["optimum"]
                hits = sum(at_optimum(x, optimum, env_id) for x in returns)
                wall = statistics.median(r["summary"]["wall_time_s"] for r in runs)
                sps = statistics.median(r["summary"]["env_steps"] / r["summary"]["wall_time_s"] for r in runs)
                shell = (f"{cli[spec]:.1f}" if spec in cli and env_id == "coordination-2x2" and start == "uniform"
                         else "")
                spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
                steps = runs[0]["summary"]["env_steps"]
                lines.append(f"| {spec} | {env_id} | {start} | {statistics.mean(returns):.2f} ± {spread:.2f}{note} | "
                             f"{min(returns):.2f} | {hits}/{len(runs)} (opt. {optimum:g}) | {steps:,} | {wall:.2f} | "
                             f"{sps:,.0f} | {shell} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=None,
                        help="variants ALGO or ALGO:FLAG=VALUE,... (default: every script in algos/, + the ablation)")
    parser.add_argument("--games", nargs="+", default=list(REGISTRY), choices=GAMES,
                        help="default: the matrix games (the private-signal games on request)")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..N")
    parser.add_argument("--episode-length", type=int, default=None, help="passed to every run (default: 1)")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="passed to every run (default: each script's)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the Markdown tables from the saved JSON (--out) without running anything")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "matrix_games"),
                        help="results path without suffix: OUT.json (every run, saved as it finishes) and OUT.md")
    add_arguments(parser)
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        write_report(out, load_results(out.with_suffix(".json"), parser))
        return
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    algos = variants(args, parser, available_algos())
    common = common_flags(args)
    sweep = make_jobs(algos, args.games, list(range(1, args.seeds + 1)), {s: STARTS[s] for s in args.starts}, common)
    results, outcome = run_from_args(sweep, args, parser, "benchmarks/matrix_games.py", out)
    if "coordination-2x2" in args.games:  # timed from the shell for the variants trained now, or never timed
        cli = results.extra.setdefault("cli_seconds", {})
        timed = {j["algo"] for j in outcome.trained} | {spec for spec in algos if spec not in cli}
        for spec in (spec for spec in algos if spec in timed):
            cli[spec] = cli_seconds(spec, common)
        results.save()
    write_report(out, results)


def write_report(out: Path, results: Results) -> None:
    """Prints and writes OUT.md: every run in the results file, the algorithms in the order of their first run."""
    algos = list(dict.fromkeys(r["algo"] for r in results.runs))
    markdown = report(results.runs, algos, results.extra.get("cli_seconds", {}), results.footer)
    print(markdown)
    out.with_suffix(".md").write_text(markdown)


def report(results: list[dict], algos: list[str], cli: dict[str, float], footer: str) -> str:
    return (f"Seeds at the optimum (decentralized greedy policy; jpg: joint):\n\n{overview(results, algos)}\n\n"
            f"In detail:\n\n{table(results, algos, cli)}\n\n{footer}\n")


if __name__ == "__main__":
    main()
