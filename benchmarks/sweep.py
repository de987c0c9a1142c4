"""The sweep runner of the benchmarks: many training runs, on this machine or on a Ray cluster, resumable.

A *job* is one training run, described generically (`make_job()`, `make_jobs()`): an algorithm variant
(`"mi_pg"` or `"mi_pg:lambda_max=0,num_envs=8"`), an env id, a start (a label and its `--init-prob`), a seed, a
dict of common flags passed to the script (`--total-timesteps` ...), and the TensorBoard tags to bring back.
`run_sweep()` runs a list of them with one of two backends and writes every finished run at once to the
results JSON (a temporary file, then a rename: a crash never leaves a half-written file):

- the local process pool (default): `--workers` processes on this machine;
- Ray (`--ray-address local` starts a Ray instance on this machine, `--ray-address auto` joins the running
  cluster, or give its address): each run is one task with `num_cpus=1` (with `--cuda`, `--gpus-per-run` of
  a GPU), retried up to `--max-retries` times when its worker process or node dies. Ray is imported only then.

A run's identity (its *key*) is its variant, env id, start, init_prob, seed and common flags. Re-running a
command skips the runs whose key is already in the results file, so an interrupted sweep resumes where it
stopped; a saved run is redone only when its script's settings have changed since (every `Args` field,
defaults included, is stored with the run), when it lacks a TensorBoard tag the job asks for, or with `--rerun`.
A run's summary depends only on its seed and flags, so both backends give the same numbers (wall time aside).

    python benchmarks/sweep.py          # measures the start-up cost of each backend on a small sweep
"""

import argparse
import dataclasses
import difflib
import importlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
import typing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Flags a job sets itself (from its env id, seed and start), so a variant, a grid or the common flags may not.
SET_BY_THE_JOB = {"env_id": "--games", "seed": "--seeds", "init_prob": "--starts", "quiet": "the runner",
                  "preset_keeps": "the runner"}
# Args fields that do not change a run's numbers: left out of the settings stored with each run.
NOT_SETTINGS = {"exp_name", "quiet", "track", "wandb_project_name", "wandb_entity", "save_model",
                "preset_keeps"}  # which fields a --preset left alone: the settings themselves say what they are


def ray_runtime_env() -> dict:
    """This repository, shipped to every Ray worker (its working directory and import path): the code, not the
    results, logs, figures or docs (patterns as in .gitignore, which Ray also honours). A new dict each time:
    ray.init rewrites the one it is given (working_dir becomes the uploaded package's URI, which a later Ray
    instance would not have)."""
    return {"working_dir": str(ROOT), "excludes": ["/.git", "/runs", "/site", "/docs", "/benchmarks/results",
                                                  "/benchmarks/figures", "*.png"]}


class SweepError(ValueError):
    """Bad input to a sweep (a variant, a grid, a flag value, the results file): the message names it."""


# ============================ jobs and variants ============================
def scripts() -> list[str]:
    """Every training script in algos/, by name."""
    return sorted(p.stem for p in (ROOT / "algos").glob("*.py") if p.stem != "__init__")


def args_fields(algo: str) -> dict[str, dataclasses.Field]:
    if algo not in scripts():
        raise SweepError(f"unknown algorithm {algo!r}; available: {', '.join(scripts())}")
    return {f.name: f for f in dataclasses.fields(importlib.import_module(f"algos.{algo}").Args)}


def parse_value(text: str, annotation) -> object:
    """A flag's value from its text, by the type of its Args field (what tyro does on the command line)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if type(None) in options and text == "None":
        return None
    for kind in (k for k in options if k is not type(None)):
        if typing.get_origin(kind) is typing.Literal:
            if text in typing.get_args(kind):
                return text
            raise ValueError(f"one of {', '.join(map(str, typing.get_args(kind)))}")
        if kind is bool:
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ValueError("true or false")
        if kind is int:
            try:
                number = float(text)
            except ValueError:
                raise ValueError("an integer") from None
            if not number.is_integer():
                raise ValueError("an integer")
            return int(number)
        if kind is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError("a number") from None
        return text  # str
    raise ValueError(f"a value of type {annotation}")


def parse_variant(spec: str) -> tuple[str, dict]:
    """'mi_pg:lambda_max=0.5,num_envs=8' -> ('mi_pg', {'lambda_max': 0.5, 'num_envs': 8}), each value typed by
    the script's Args field; a clear SweepError for an unknown algorithm or flag or a bad value."""
    algo, _, flags = spec.partition(":")
    fields = args_fields(algo)
    overrides = {}
    for item in flags.split(",") if flags else []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not text:
            raise SweepError(f"variant {spec!r}: expected ALGO:FLAG=VALUE[,FLAG=VALUE...], got {item!r}")
        check_flag(algo, key, fields, f"variant {spec!r}")
        if key in overrides:
            raise SweepError(f"variant {spec!r} sets {key} twice")
        try:
            overrides[key] = parse_value(text, fields[key].type)
        except ValueError as err:
            raise SweepError(f"variant {spec!r}: --{key.replace('_', '-')} must be {err}, got {text!r}") from None
    return algo, overrides


def check_flag(algo: str, flag: str, fields: dict, where: str) -> None:
    if flag in SET_BY_THE_JOB:
        raise SweepError(f"{where}: {flag} is set by {SET_BY_THE_JOB[flag]}, not by a variant or a grid")
    if flag not in fields:
        close = difflib.get_close_matches(flag, fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        usable = [name for name in fields if name not in SET_BY_THE_JOB]
        raise SweepError(f"{where}: {algo} has no flag {flag!r}{hint}; its flags: {', '.join(usable)}")


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """['learning_rate=1e-3,3e-4', 'num_envs=8,128'] -> [('learning_rate', ['1e-3', '3e-4']), ('num_envs', ...)]."""
    grid = []
    for item in items:
        flag, sep, values = item.partition("=")
        flag = flag.strip().replace("-", "_")
        texts = values.split(",")
        if not sep or not flag or "" in texts:
            raise SweepError(f"--grid {item!r}: expected FLAG=VALUE[,VALUE...], e.g. learning_rate=1e-3,3e-4")
        if flag in (f for f, _ in grid):
            raise SweepError(f"--grid names {flag} twice")
        if len(set(texts)) < len(texts):
            raise SweepError(f"--grid {item!r} repeats a value")
        grid.append((flag, texts))
    return grid


def expand_grid(specs: list[str], items: list[str]) -> list[str]:
    """Every variant in `specs` crossed with every combination of the grid, in today's variant syntax:
    expand_grid(['mi_pg'], ['learning_rate=1e-3,3e-4', 'num_envs=8,128']) ->
    ['mi_pg:learning_rate=1e-3,num_envs=8', 'mi_pg:learning_rate=1e-3,num_envs=128', ...]. Each result is checked
    (script, flag names, values); a flag a variant already sets is an error."""
    grid = parse_grid(items)
    expanded = []
    for spec in specs:
        algo, fixed = parse_variant(spec)
        for flag, _ in grid:
            check_flag(algo, flag, args_fields(algo), f"--grid {flag}")
            if flag in fixed:
                raise SweepError(f"--grid {flag}: the variant {spec!r} already sets it")
        for values in itertools.product(*(texts for _, texts in grid)):
            flags = ",".join(f"{flag}={value}" for (flag, _), value in zip(grid, values))
            variant = f"{spec}{',' if ':' in spec else ':'}{flags}" if flags else spec
            parse_variant(variant)  # a bad value is an error here, before anything runs
            expanded.append(variant)
    return list(dict.fromkeys(expanded))


def make_job(algo: str, env_id: str, seed: int, start: str = "uniform", init_prob: float | None = None,
             common: dict | None = None, read_scalars: list[str] = ()) -> dict:
    """One training run: `algo` a variant, `common` flags for the script (e.g. {'total_timesteps': 500000}),
    `read_scalars` the TensorBoard tags to bring back with the summary."""
    return {"algo": algo, "env_id": env_id, "start": start, "init_prob": init_prob, "seed": seed,
            "common": dict(common or {}), "read_scalars": list(read_scalars)}


def make_jobs(algos: list[str], env_ids: list[str], seeds: list[int], starts: dict[str, float | None] | None = None,
              common=None, read_scalars: list[str] = ()) -> list[dict]:
    """Every variant x start x env id x seed, in that order. `common` is a dict of flags for every run, or a
    function variant -> dict (e.g. a different budget per algorithm). A start with an init_prob is skipped for
    the scripts without --init-prob (the value-based ones have no policy to initialize)."""
    result = []
    for spec in algos:
        flags = common(spec) if callable(common) else common
        algo = spec.split(":")[0]
        for start, init_prob in (starts or {"uniform": None}).items():
            if init_prob is not None and "init_prob" not in args_fields(algo):
                continue
            result += [make_job(spec, env_id, seed, start, init_prob, flags, read_scalars)
                       for env_id in env_ids for seed in seeds]
    return result


def run_key(run: dict) -> str:
    """What makes a run different from another: its variant, game, start, init_prob, seed and common flags."""
    return json.dumps([run["algo"], run["env_id"], run["start"], run["init_prob"], run["seed"], run["common"]],
                      sort_keys=True)


def make_args(job: dict):
    """The script's module and its Args for this job."""
    algo, overrides = parse_variant(job["algo"])
    module = importlib.import_module(f"algos.{algo}")
    clash = set(overrides) & set(job["common"])
    if clash:
        flags = ", ".join(f"--{flag.replace('_', '-')}" for flag in sorted(clash))
        raise SweepError(f"variant {job['algo']!r} sets {flags}, which the benchmark sets for every run too")
    fields = args_fields(algo)
    for flag in job["common"]:
        check_flag(algo, flag, fields, "common flags")
    kwargs = dict(env_id=job["env_id"], seed=job["seed"], quiet=True, **job["common"], **overrides)
    if job["init_prob"] is not None:
        kwargs["init_prob"] = job["init_prob"]
    if "preset_keeps" in fields:  # the flags a job names are given explicitly: --preset leaves them
        kwargs["preset_keeps"] = (*overrides, *job["common"])
    return module, module.Args(**kwargs)


def settings(job: dict) -> dict:
    """The run's full settings, defaults and the game's budget filled in, checked by the script's own check_args
    (so a bad value stops the sweep before anything runs)."""
    module, args = make_args(job)
    try:
        module.check_args(args)
    except ValueError as err:
        raise SweepError(f"{job['algo']} on {job['env_id']}: {err}") from None
    return {name: value for name, value in vars(args).items() if name not in NOT_SETTINGS}


def changed_settings(job: dict, saved: dict, want: dict) -> list[str]:
    """The fields in which a saved run's settings differ from the ones the script would use now. A field the saved
    settings lack (a flag added to the script after the run) counts as its default: a new flag's default keeps
    what the script did before (this project's rule for new flags), so it changes the run only when set."""
    defaults = {name: field.default for name, field in args_fields(parse_variant(job["algo"])[0]).items()}
    return sorted(k for k in {*want, *saved} if want.get(k) != saved.get(k, defaults.get(k)))


def run_one(job: dict) -> dict:
    """One training run, in a worker process (the pool's or Ray's), logs in a throwaway directory: the summary,
    and the scalars named in job['read_scalars'] as {tag: [steps, values]}."""
    import torch

    torch.set_num_threads(1)
    module, args = make_args(job)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the script writes runs/{run_name}/ under the current directory
        try:
            summary = module.train(args)
            scalars = {}
            if job["read_scalars"]:
                from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

                (run_dir,) = Path(tmp, "runs").iterdir()
                logs = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()  # 0: keep every point
                scalars = {tag: [[e.step for e in logs.Scalars(tag)], [e.value for e in logs.Scalars(tag)]]
                           for tag in job["read_scalars"]}
        finally:
            os.chdir(cwd)
    return {"summary": summary, "scalars": scalars}


# ============================ the results file ============================
class Results:
    """A sweep's results JSON: {"runs": [one record per run], other keys a benchmark adds, "footer": "..."}.

    A record is the job (without read_scalars) plus "settings", "summary" (the script's whole summary dict) and
    "scalars". Files from before this runner (no "settings"; simple_spread's "curve") are read as well.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
        except json.JSONDecodeError as err:
            raise SweepError(f"{self.path} is not valid JSON ({err}): move it away to start afresh") from None
        self.runs = [normalize(run) for run in data.pop("runs", [])]
        self.footer = data.pop("footer", "")
        self.extra = data  # what a benchmark adds beside the runs (cli_seconds, speed, ...)
        self._lines = {}  # run key -> (record, its JSON line): a long sweep does not re-encode every run each time

    def index(self) -> dict[str, int]:
        return {run_key(run): i for i, run in enumerate(self.runs)}

    def put(self, record: dict, sweep_keys: list[str]) -> None:
        """Adds a finished run, or replaces the saved run with its key in place. A new run goes right after the
        run of the closest earlier job of the sweep that is in the file (else right before the closest later
        one, else at the end), so the order does not depend on which runs finished first, nor on interruptions."""
        record, key, index = normalize(record), run_key(record), self.index()
        if key in index:
            self.runs[index[key]] = record
            return
        position = sweep_keys.index(key)
        before = [index[k] for k in sweep_keys[:position] if k in index]
        after = [index[k] for k in sweep_keys[position + 1:] if k in index]
        at = before[-1] + 1 if before else after[0] if after else len(self.runs)
        self.runs.insert(at, record)

    def save(self) -> None:
        """One run per line; written to a temporary file that then replaces the results file."""
        lines = []
        for run in self.runs:
            key = run_key(run)
            if self._lines.get(key, (None,))[0] is not run:
                self._lines[key] = (run, json.dumps(run))
            lines.append(self._lines[key][1])
        rest = [f"{json.dumps(k)}: {json.dumps(v, indent=1)}" for k, v in {**self.extra, "footer": self.footer}.items()]
        text = "{\"runs\": [\n" + ",\n".join(lines) + "\n],\n" + ",\n".join(rest) + "\n}\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:  # a crash or Ctrl-C while writing: the results file stays as it was
            temporary.unlink(missing_ok=True)
            raise


def normalize(run: dict) -> dict:
    """A saved record in today's form (older files: no "start" in simple_spread's, its curve under "curve")."""
    run = dict(run)
    run.pop("read_scalars", None)
    if "start" not in run:
        run = {**{k: run[k] for k in ("algo", "env_id")},
               "start": "uniform" if run["init_prob"] is None else f"p={run['init_prob']:g}", **run}
    scalars = run.pop("scalars", {})
    if "curve" in run:
        scalars = {"charts/episodic_return": run.pop("curve"), **scalars}
    return {**run, "scalars": scalars}


# ============================ backends ============================
def error_text(err: BaseException) -> str:
    """The last line of an error's traceback: what went wrong, without the stack."""
    return traceback.format_exception_only(type(err), err)[-1].strip()


def stop_on_sigterm(signum, frame):
    """`kill PID` stops a sweep as Ctrl-C does. A shell starts its background jobs with SIGINT ignored, so a sweep
    started with `nohup ... &` cannot be stopped by SIGINT; SIGTERM, the signal `kill` sends, does it instead."""
    raise KeyboardInterrupt


class LocalPool:
    """`workers` processes on this machine. When a worker process dies (killed, out of memory) the pool breaks:
    it is rebuilt and the runs it held are retried, each at most `max_retries` times."""

    def __init__(self, workers: int, max_retries: int):
        self.workers, self.max_retries, self.pool = workers, max_retries, None
        self.startup_s = 0.0

    def describe(self) -> str:
        return f"{self.workers} worker processes"

    def __enter__(self):
        return self

    def run(self, task, todo: list[dict]):
        """Yields (job, result, None) or (job, None, error text) as runs finish."""
        attempts = {}
        while todo:
            self.pool = ProcessPoolExecutor(max_workers=self.workers)
            futures = {self.pool.submit(task, job): job for job in todo}
            todo = []
            for future in as_completed(futures):
                job = futures[future]
                try:
                    yield job, future.result(), None
                except BrokenProcessPool:
                    key = run_key(job)
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] <= self.max_retries:
                        todo.append(job)
                    else:
                        yield job, None, f"its worker process died (tried {attempts[key]} times)"
                except Exception as err:  # noqa: BLE001 (any error of the run is a failed run, not retried)
                    yield job, None, error_text(err)
            self.pool.shutdown()
        self.pool = None

    def __exit__(self, *exc):
        if self.pool is not None:  # interrupted: stop the runs in flight now, not when they end
            processes = list((self.pool._processes or {}).values())  # no public handle on them before Python 3.14
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=10)


class RayCluster:
    """Each run one Ray task (num_cpus=1, `gpus_per_run` GPUs), retried up to `max_retries` times when its worker
    process or its node dies. `address` "local" starts a Ray instance here (`workers` CPUs), anything else
    ("auto", "host:port") joins a cluster; either way with ray_runtime_env(), which ships this repository to every
    worker. A process already connected to Ray (a test) is used as it is, so it should connect with it too."""

    def __init__(self, address: str, workers: int, gpus_per_run: float, max_retries: int):
        self.address, self.workers, self.gpus, self.max_retries = address, workers, gpus_per_run, max_retries
        self.started, self.pending, self.startup_s = False, {}, 0.0

    def __enter__(self):
        started = time.perf_counter()
        try:
            import ray
        except ImportError:
            raise SweepError("--ray-address needs Ray: pip install ray==2.60.0 (requirements.txt)") from None
        self.ray = ray
        if not ray.is_initialized():
            if self.address == "local":
                # address "local": a new instance even if `ray start` left one (or its address file) here
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                         runtime_env=ray_runtime_env())
            else:
                try:
                    ray.init(address=self.address, runtime_env=ray_runtime_env())
                except ConnectionError as err:
                    raise SweepError(f"--ray-address {self.address}: {err} Start a cluster with `ray start --head` "
                                     "(docs/sweeps.md), or use --ray-address local") from None
            self.started = True
        self.startup_s = time.perf_counter() - started
        return self

    def describe(self) -> str:
        nodes = sum(node["Alive"] for node in self.ray.nodes())
        return f"Ray, {nodes} node{'s' * (nodes > 1)}, {self.ray.cluster_resources().get('CPU', 0):g} CPUs"

    def run(self, task, todo: list[dict]):
        ray = self.ray
        remote = ray.remote(task).options(num_cpus=1, num_gpus=self.gpus, max_retries=self.max_retries,
                                          retry_exceptions=False)
        self.pending = {remote.remote(job): job for job in todo}
        while self.pending:
            done, _ = ray.wait(list(self.pending), num_returns=1)
            job = self.pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:  # the run raised: not retried
                yield job, None, error_text(err.cause) if err.cause is not None else str(err).splitlines()[-1]
            except ray.exceptions.RayError as err:  # worker or node died more than max_retries times, ...
                yield job, None, f"{type(err).__name__}: {str(err).splitlines()[0]}"
            else:
                yield job, result, None

    def __exit__(self, *exc):
        for ref in self.pending:  # interrupted: do not leave the cluster running them
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


# ============================ the sweep ============================
@dataclasses.dataclass
class SweepOutcome:
    records: list[dict]  # this sweep's runs, in job order (those that finished, now or before)
    trained: list[dict]  # the jobs trained now (not failed)
    reused: int  # runs found done in the results file
    failed: dict[str, str]  # run key -> error
    wall_s: float
    backend: str
    startup_s: float

    def line(self) -> str:
        startup = f" ({self.startup_s:.1f} s of it connecting to Ray)" if self.startup_s else ""
        return (f"sweep: {len(self.records) + len(self.failed)} runs, {len(self.trained)} trained now, "
                f"{self.reused} done before, {len(self.failed)} failed; {self.wall_s:.0f} s{startup}; {self.backend}")


def run_sweep(jobs: list[dict], results: Results, *, add: bool = False, rerun: bool = False,
              ray_address: str | None = None, workers: int | None = None, gpus_per_run: float = 0.0,
              max_retries: int = 3, command: str = "", task=run_one, progress: bool = True) -> SweepOutcome:
    """Runs the jobs not yet in `results` and saves each as it finishes (see the module docstring).

    Without `add`, a results file holding runs outside this sweep is an error (nothing is dropped by accident);
    with it, those runs are kept. `task(job) -> {"summary", "scalars"}` trains one run (tests swap it).
    Raises SweepError on bad input, before anything runs; KeyboardInterrupt stops the runs in flight, and what
    finished is saved.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    unique = {}
    for j in jobs:  # the same run asked twice (e.g. by two figures): once, with both sets of tags
        key = run_key(j)
        unique[key] = {**j, "read_scalars": sorted({*unique.get(key, j)["read_scalars"], *j["read_scalars"]})}
    keys, jobs = list(unique), list(unique.values())
    cache = {}  # settings do not depend on the seed: one check per variant, game, start and common flags
    wanted = []
    for j in jobs:
        shared = run_key({**j, "seed": None})
        if shared not in cache:
            cache[shared] = settings(j)
        wanted.append({**cache[shared], "seed": j["seed"]})
    saved, in_sweep = results.index(), set(keys)
    outside = [run for run in results.runs if run_key(run) not in in_sweep]
    if outside and not add:
        example = outside[0]
        raise SweepError(f"{results.path} holds {len(outside)} runs outside this sweep (e.g. {example['algo']} on "
                         f"{example['env_id']}, {example['start']}, seed {example['seed']}, common flags "
                         f"{example['common']}): pass --add to keep them beside it, or choose another --out")

    todo, reused, trusted, notes = [], 0, 0, {}
    for j, key, want in zip(jobs, keys, wanted):
        run = results.runs[saved[key]] if key in saved else None
        if run is None or rerun:
            todo.append(j)
        elif run.get("settings") is not None and (changed := changed_settings(j, run["settings"], want)):
            notes.setdefault(j["algo"], set()).update(changed)
            todo.append(j)
        elif not set(j["read_scalars"]) <= set(run["scalars"]):
            todo.append(j)
        else:
            reused += 1
            trusted += run.get("settings") is None
    for algo, changed in notes.items():
        print(f"{algo}: settings changed since its saved runs ({', '.join(sorted(changed))}): running them again")
    if trusted:
        print(f"{trusted} saved runs predate stored settings: reused by key (variant, game, start, seed, common "
              f"flags); --rerun trains them again")

    if not todo:  # nothing to train: no backend to start
        backend, description = LocalPool(0, 0), "nothing to train"
    elif ray_address:
        backend = RayCluster(ray_address, workers or os.cpu_count(), gpus_per_run, max_retries)
    else:
        backend = LocalPool(workers or os.cpu_count(), max_retries)
    earlier_footer, failed, trained = results.footer, {}, []
    settings_of = {key: want for key, want in zip(keys, wanted)}
    bar = tqdm(total=len(jobs), initial=reused, unit="run", desc="sweep", dynamic_ncols=True,
               disable=None if progress else True)
    with backend, bar:
        description = backend.describe() if todo else description
        for j, result, error in backend.run(task, todo):
            key = run_key(j)
            if error is not None:
                failed[key] = error
                bar.set_postfix(failed=len(failed))
                bar.write(f"failed: {j['algo']} on {j['env_id']}, {j['start']}, seed {j['seed']}: {error}")
            else:
                trained.append(j)
                results.put({**j, "settings": settings_of[key], **result}, keys)
                line = (f"{len(trained)} runs, {description}, {time.perf_counter() - started:.0f} s in all. "
                        f"Made by `{command}`.")
                results.footer = f"{earlier_footer}\nThen {line}" if earlier_footer else line
                results.save()
            bar.update()
    index = results.index()
    outcome = SweepOutcome([results.runs[index[k]] for k in keys if k in index and k not in failed], trained, reused,
                           failed, time.perf_counter() - started, description, backend.startup_s)
    print(outcome.line())
    return outcome


# ============================ the command line ============================
def add_arguments(parser: argparse.ArgumentParser, grid: bool = True, cache: bool = False) -> None:
    """The sweep flags every benchmark shares. `cache`: the results file is only a cache of runs (figures.py), so
    the runs outside a sweep are always kept (no --add)."""
    group = parser.add_argument_group("sweep (benchmarks/sweep.py)")
    if grid:
        group.add_argument("--grid", nargs="+", default=[], metavar="FLAG=V1,V2",
                           help="cross every --algos variant with these flag values, e.g. --grid "
                                "learning_rate=1e-3,3e-4 num_envs=8,128 (4 variants of each, named "
                                "algo:learning_rate=1e-3,num_envs=8 and so on); checked before anything runs")
    group.add_argument("--workers", type=int, default=os.cpu_count(),
                       help="worker processes of the local pool, or CPUs of a Ray instance started with "
                            "--ray-address local (default: this machine's cores)")
    group.add_argument("--ray-address", default=None,
                       help="run on Ray: 'local' starts an instance on this machine, 'auto' joins the cluster "
                            "started with `ray start` here, or give its address (default: the local process pool)")
    group.add_argument("--cuda", action="store_true", help="train on the GPU (passed to every run: part of its key)")
    group.add_argument("--gpus-per-run", type=float, default=0.25,
                       help="with --cuda on Ray: the share of a GPU each run reserves")
    group.add_argument("--max-retries", type=int, default=3,
                       help="times a run is retried when its worker process (or Ray node) dies")
    if cache:
        parser.set_defaults(add=True)
    else:
        group.add_argument("--add", action="store_true",
                           help="keep the saved runs outside this sweep in the results file (--out). What changed: "
                                "runs are now resumed, so re-running a command never repeats a finished run; "
                                "without --add, a results file holding other runs is an error (it used to be "
                                "overwritten); with it, a saved run of the algorithms named is replaced only when "
                                "its script's settings changed or with --rerun (it used to be replaced always)")
    group.add_argument("--rerun", action="store_true",
                       help="train this sweep's runs again even if saved (e.g. after a change to a script's code); "
                            "each replaces its saved run as it finishes. An interrupted --rerun resumes with "
                            "--rerun (which trains again what it had finished) or without (which keeps the old "
                            "results of the runs it had not reached)")


def common_flags(args: argparse.Namespace, names: tuple[str, ...] = ("episode_length", "total_timesteps")) -> dict:
    """The flags a benchmark passes to every run: those given (else the script's default stands), and --cuda."""
    flags = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return {**flags, "cuda": True} if args.cuda else flags


def sweep_options(args: argparse.Namespace, parser: argparse.ArgumentParser, command: str) -> dict:
    """The keyword arguments of run_sweep from the parsed flags; bad values are parser errors."""
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.max_retries < 0:
        parser.error(f"--max-retries must be >= 0, got {args.max_retries}")
    if args.cuda and not 0 < args.gpus_per_run <= 1:
        parser.error(f"--gpus-per-run must lie in (0, 1], got {args.gpus_per_run}")
    return {"add": args.add, "rerun": args.rerun, "ray_address": args.ray_address, "workers": args.workers,
            "gpus_per_run": args.gpus_per_run if args.cuda else 0.0, "max_retries": args.max_retries,
            "command": command}


def variants(args: argparse.Namespace, parser: argparse.ArgumentParser, default: list[str]) -> list[str]:
    """--algos (default `default`) crossed with --grid, every variant checked; errors name the flag."""
    specs = args.algos or default
    try:
        for spec in specs:
            parse_variant(spec)
    except SweepError as err:
        parser.error(f"--algos: {err}")
    try:
        return expand_grid(specs, args.grid)
    except SweepError as err:
        parser.error(str(err) if str(err).startswith("--grid") else f"--grid: {err}")


def load_results(path: Path, parser: argparse.ArgumentParser) -> Results:
    """The saved results, for --report-only: a missing or unreadable file is a parser error."""
    if not path.exists():
        parser.error(f"--report-only: {path} does not exist")
    try:
        return Results(path)
    except SweepError as err:
        parser.error(str(err))


def run_from_args(sweep: list[dict], args: argparse.Namespace, parser: argparse.ArgumentParser, script: str,
                  out: Path) -> tuple[Results, SweepOutcome]:
    """A benchmark's sweep from its flags, into out.json: bad input is a parser error (exit 2), Ctrl-C or SIGTERM
    (`kill PID`) saves what finished (exit 130), failed runs exit 1 after saving the others."""
    command = f"python {script} {' '.join(sys.argv[1:])}".strip()
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        results = Results(out.with_suffix(".json"))
        outcome = run_sweep(sweep, results, **sweep_options(args, parser, command))
    except SweepError as err:
        parser.error(str(err))
    except KeyboardInterrupt:
        saved = len(Results(results.path).runs)
        print(f"\ninterrupted: {results.path} holds {saved} finished runs; run the same command again to resume",
              file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if outcome.failed:
        print(f"{len(outcome.failed)} runs failed (listed above); the others are saved in {results.path}. Run the "
              "same command again to retry the failed ones; --report-only makes the tables of what finished.",
              file=sys.stderr)
        sys.exit(1)
    return results, outcome


def main():
    """What Ray's start-up costs against the local pool: the same small benchmark command, end to end, once with
    each backend per repeat (alternating; each a fresh process and a fresh results file)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--algos", nargs="+", default=["mi_pg", "ipg"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_overhead"))
    args = parser.parse_args()
    command = ["benchmarks/matrix_games.py", "--algos", *args.algos, "--games", "climbing", "--starts", "uniform",
               "--seeds", str(args.seeds), "--workers", str(args.workers)]
    backends = {"local pool": [], "Ray, local instance": ["--ray-address", "local"]}
    times = {name: [] for name in backends}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, flags in backends.items():
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                done = subprocess.run([sys.executable, *command, *flags, "--out", f"{tmp}/runs"], cwd=ROOT,
                                      capture_output=True, text=True, check=True)
                wall = time.perf_counter() - started
            sweep = re.search(r"^sweep: .*?; (\d+) s(?: \(([\d.]+) s of it connecting to Ray\))?", done.stdout,
                              re.MULTILINE)
            times[name].append({"command_s": wall, "sweep_s": float(sweep[1]), "ray_init_s": float(sweep[2] or 0)})
            load.append(os.getloadavg()[0])
            print(name, times[name][-1])

    def median(name, key):
        return statistics.median(t[key] for t in times[name])

    lines = [(f"`python {' '.join(command)} [--ray-address local]`: {len(args.algos) * args.seeds} runs of 64,000 env "
              f"steps, {args.workers} workers; {args.repeats} repeats per backend, alternating. Medians, in seconds:"),
             "", "| backend | whole command | the sweep | of which ray.init | every command |", "|---|---|---|---|---|"]
    for name in backends:
        every = ", ".join(f"{t['command_s']:.1f}" for t in times[name])
        lines.append(f"| {name} | {median(name, 'command_s'):.1f} | {median(name, 'sweep_s'):.0f} | "
                     f"{median(name, 'ray_init_s'):.1f} | {every} |")
    extra = median("Ray, local instance", "command_s") - median("local pool", "command_s")
    flags = " ".join(sys.argv[1:])
    lines += ["", (f"Ray's extra cost on this sweep: {extra:.1f} s. One-minute load average during the measurement "
                   f"{min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores (other jobs shared the machine)."),
              "", f"Made by `python benchmarks/sweep.py{' ' + flags if flags else ''}`."]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    Path(args.out).with_suffix(".md").write_text(markdown)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"times": times, "load": load}, indent=1))


if __name__ == "__main__":
    main()
