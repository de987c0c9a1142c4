"""Every algorithm x every registered matrix game x N seeds, from a uniform and from the adversarial start.

Prints a Markdown table and writes it (with the raw per-seed numbers as JSON) to benchmarks/results/:
mean ± std and min decentralized greedy return, seeds at the optimum, env steps per run, median wall
seconds per run (training and evaluation, in-process), and the end-to-end seconds of one `python algos/<algo>.py` (torch import included).

    python benchmarks/matrix_games.py                          # everything (the README's table)
    python benchmarks/matrix_games.py --algos mi_pg ipg --seeds 3
    python benchmarks/matrix_games.py --algos mi_pg ipg --episode-length 25 --total-timesteps 1600000 \
        --games climbing penalty --starts uniform --seeds 5 --out benchmarks/results/matrix_games_T25
"""

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
    scripts = {p.stem for p in (ROOT / "algos").glob("*.py") if p.stem != "__init__"}
    known = [a for a in PREFERRED_ORDER if a.split(":")[0] in scripts]
    return known + sorted(scripts - {a.split(":")[0] for a in known})


def parse_variant(spec: str) -> tuple[str, dict]:
    """'mi_pg:lambda_max=0.5,num_envs=8' -> ('mi_pg', {'lambda_max': 0.5, 'num_envs': 8}): written as an integer,
    a value is an int"""
    algo, _, flags = spec.partition(":")
    overrides = {}
    for flag in filter(None, flags.split(",")):
        key, value = flag.split("=")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return algo, overrides


def run_one(job: dict) -> dict:
    """One training run in a worker process, logs in a throwaway directory.

    With job["read_scalars"], the result also holds every TensorBoard scalar as {tag: (steps, values)}.
    """
    import torch

    torch.set_num_threads(1)
    algo, overrides = parse_variant(job["algo"])
    module = importlib.import_module(f"algos.{algo}")
    kwargs = dict(env_id=job["env_id"], seed=job["seed"], quiet=True, **job["common"], **overrides)
    if job["init_prob"] is not None:
        kwargs["init_prob"] = job["init_prob"]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        summary = module.train(module.Args(**kwargs))
        if job.get("read_scalars"):
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            (run_dir,) = Path(tmp, "runs").iterdir()
            logs = EventAccumulator(str(run_dir)).Reload()
            scalars = {tag: ([e.step for e in logs.Scalars(tag)], [e.value for e in logs.Scalars(tag)])
                       for tag in logs.Tags()["scalars"]}
            return {**job, "summary": summary, "scalars": scalars}
    return {**job, "summary": summary}


def supports_init_prob(spec: str) -> bool:
    algo, _ = parse_variant(spec)
    return "init_prob" in importlib.import_module(f"algos.{algo}").Args.__dataclass_fields__


def cli_seconds(spec: str, common: dict) -> float:
    """Wall seconds of one coordination-2x2 run from the shell, python start-up and torch import included."""
    algo, overrides = parse_variant(spec)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**common, **overrides}.items()]
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
        ("| algorithm | game | start | return (mean ± std) | min return | seeds at optimum | env steps | median s / run "
        "| env steps/s | s from shell |"),
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
                shell = f"{cli[spec]:.1f}" if spec in cli and env_id == "coordination-2x2" and start == "uniform" else ""
                spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
                steps = runs[0]["summary"]["env_steps"]
                lines.append(f"| {spec} | {env_id} | {start} | {statistics.mean(returns):.2f} ± {spread:.2f}{note} | "
                             f"{min(returns):.2f} | {hits}/{len(runs)} (opt. {optimum:g}) | {steps:,} | {wall:.2f} | "
                             f"{sps:,.0f} | {shell} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=None, help="default: every script in algos/ (+ ablations)")
    parser.add_argument("--games", nargs="+", default=list(REGISTRY), choices=GAMES,
                        help="default: the matrix games (the private-signal games on request)")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--episode-length", type=int, default=None, help="passed to every run (default: 1)")
    parser.add_argument("--total-timesteps", type=int, default=None, help="passed to every run (default: each script's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the Markdown tables from the saved JSON (--out) without running anything")
    parser.add_argument("--add", action="store_true",
                        help="keep the saved runs (--out) of the other algorithms and replace or add only these")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "matrix_games"))
    args = parser.parse_args()
    algos = args.algos or available_algos()
    common = {key: getattr(args, key) for key in ("episode_length", "total_timesteps") if getattr(args, key)}

    out = Path(args.out)
    if args.report_only:
        saved = json.loads(out.with_suffix(".json").read_text())
        algos = list(dict.fromkeys(r["algo"] for r in saved["runs"]))
        markdown = report(saved["runs"], algos, saved["cli_seconds"], saved["footer"])
        print(markdown)
        out.with_suffix(".md").write_text(markdown)
        return

    jobs = []
    for spec in algos:
        for start in args.starts:
            if STARTS[start] is not None and not supports_init_prob(spec):
                continue  # value-based methods have no policy to initialize
            for env_id in args.games:
                for seed in range(1, args.seeds + 1):
                    jobs.append({"algo": spec, "env_id": env_id, "start": start, "init_prob": STARTS[start], "seed": seed,
                                 "common": common})
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    cli = {spec: cli_seconds(spec, common) for spec in algos if "coordination-2x2" in args.games}
    elapsed = time.perf_counter() - started

    command = "python benchmarks/matrix_games.py " + " ".join(sys.argv[1:])
    footer = (f"{len(jobs)} runs, {args.workers} worker processes, {elapsed:.0f} s in all. "
              f"Made by `{command.strip()}`.")
    if args.add:
        earlier = json.loads(out.with_suffix(".json").read_text())
        results, footer = merge_runs(earlier, results, algos, footer)
        algos = list(dict.fromkeys([r["algo"] for r in earlier["runs"]] + algos))  # the saved order, new ones last
        cli = {**earlier["cli_seconds"], **cli}
    markdown = report(results, algos, cli, footer)
    print(markdown)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown)
    out.with_suffix(".json").write_text(json.dumps({"runs": results, "cli_seconds": cli, "footer": footer}, indent=1))


def merge_runs(earlier: dict, results: list[dict], algos: list[str], footer: str) -> tuple[list[dict], str]:
    """--add: the saved runs of the algorithms not run now, then the new runs; the footers joined."""
    kept = [r for r in earlier["runs"] if r["algo"] not in algos]
    return kept + results, f"{earlier['footer']}\nThen {footer}"


def report(results: list[dict], algos: list[str], cli: dict[str, float], footer: str) -> str:
    return (f"Seeds at the optimum (decentralized greedy policy; jpg: joint):\n\n{overview(results, algos)}\n\n"
            f"In detail:\n\n{table(results, algos, cli)}\n\n{footer}\n")


if __name__ == "__main__":
    main()
