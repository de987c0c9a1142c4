"""The benchmarks' sweep runner (benchmarks/sweep.py): grids, resuming, retries, and Ray against the local pool.

Runner-logic tests use `fake_run`, which trains nothing; the others train tiny matrix-game runs. The Ray tests
(last in this file) share one local Ray instance, started with the runner's own runtime environment and shut down
at the end of the module.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import matrix_games, simple_spread
from benchmarks.sweep import (
    Results,
    SweepError,
    expand_grid,
    make_job,
    make_jobs,
    parse_variant,
    ray_runtime_env,
    run_key,
    run_one,
    run_sweep,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"total_timesteps": 1280, "eval_episodes": 100}  # 10 updates of 128 one-round games: well under a second


def fake_run(job: dict) -> dict:
    """Stands in for run_one where only the runner is under test: a summary that names its job and process."""
    return {"summary": {"seed": job["seed"], "algo": job["algo"], "pid": os.getpid(), "wall_time_s": 0.0},
            "scalars": {}}


def dies_once_then_runs(job: dict) -> dict:
    """The first call for seed 2 kills its worker process, as an out-of-memory kill would (marker: a file)."""
    marker = Path(os.environ["SWEEP_TEST_MARKER"])
    if job["seed"] == 2 and not marker.exists():
        marker.touch()
        os._exit(1)
    return run_one(job)


def interrupts_at_iql(job: dict) -> dict:
    """Ctrl-C in the middle of a sweep: the first iql run waits until the driver has saved the runs before it,
    signals the driver, then runs on until it is stopped."""
    if job["algo"] == "iql":
        deadline = time.monotonic() + 60
        while len(Results(os.environ["SWEEP_TEST_RESULTS"]).runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(60)
    return run_one(job)


def without_wall_time(runs: list[dict]) -> list[dict]:
    """Runs as compared across backends and sessions: everything but the summary's wall_time_s."""
    return [{**run, "summary": {k: v for k, v in run["summary"].items() if k != "wall_time_s"}} for run in runs]


# ============================ grids and variants ============================
def test_grid_expands_into_variants_in_todays_syntax():
    assert expand_grid(["mi_pg", "ipg"], ["learning_rate=1e-3,3e-4", "num_envs=8,128"]) == [
        "mi_pg:learning_rate=1e-3,num_envs=8", "mi_pg:learning_rate=1e-3,num_envs=128",
        "mi_pg:learning_rate=3e-4,num_envs=8", "mi_pg:learning_rate=3e-4,num_envs=128",
        "ipg:learning_rate=1e-3,num_envs=8", "ipg:learning_rate=1e-3,num_envs=128",
        "ipg:learning_rate=3e-4,num_envs=8", "ipg:learning_rate=3e-4,num_envs=128"]
    assert expand_grid(["mi_pg:lambda_max=0"], ["ent-coef=0.1,0.01"]) == [
        "mi_pg:lambda_max=0,ent_coef=0.1", "mi_pg:lambda_max=0,ent_coef=0.01"]
    assert expand_grid(["mi_pg", "iql"], []) == ["mi_pg", "iql"]
    # values typed by the script's Args field, as tyro would parse them on the command line
    assert parse_variant("mi_pg:learning_rate=3e-4,num_envs=8,lambda_shape=linear,norm_adv=false,"
                         "total_timesteps=1e6,episode_length=None") == ("mi_pg", {
                             "learning_rate": 3e-4, "num_envs": 8, "lambda_shape": "linear", "norm_adv": False,
                             "total_timesteps": 1_000_000, "episode_length": None})
    assert isinstance(parse_variant("mi_pg:lambda_max=0")[1]["lambda_max"], float)


@pytest.mark.parametrize("algos, grid, message", [
    (["mi_pg"], ["learning_rate"], "--grid 'learning_rate': expected FLAG=VALUE"),
    (["mi_pg"], ["=1e-3"], "expected FLAG=VALUE"),
    (["mi_pg"], ["learning_rate="], "expected FLAG=VALUE"),
    (["mi_pg"], ["learning_rate=1e-3,,3e-4"], "expected FLAG=VALUE"),
    (["mi_pg"], ["num_envs=8", "num_envs=16"], "--grid names num_envs twice"),
    (["mi_pg"], ["num_envs=8,8"], "repeats a value"),
    (["mi_pg"], ["learnin_rate=1e-3"], "mi_pg has no flag 'learnin_rate' (did you mean learning_rate?)"),
    (["mi_pg", "iql"], ["lambda_max=1,5"], "iql has no flag 'lambda_max'"),
    (["mi_pg:lambda_max=0"], ["lambda_max=1,5"], "the variant 'mi_pg:lambda_max=0' already sets it"),
    (["mi_pg"], ["seed=1,2"], "seed is set by --seeds"),
    (["mi_pg"], ["num_envs=8,eight"], "--num-envs must be an integer, got 'eight'"),
    (["mi_pg"], ["num_envs=8.5"], "--num-envs must be an integer"),
    (["mi_pg"], ["lambda_shape=cubic"], "--lambda-shape must be one of linear, cosine"),
    (["mi_pg"], ["norm_adv=yes"], "--norm-adv must be true or false"),
    (["nope"], ["num_envs=8"], "unknown algorithm 'nope'; available: coma"),
    (["mi_pg:lambda_max"], [], "expected ALGO:FLAG=VALUE"),
])
def test_bad_grids_and_variants_are_clear_errors(algos, grid, message):
    with pytest.raises(SweepError) as error:
        expand_grid(algos, grid)
    assert message in str(error.value)


def test_a_bad_value_stops_the_sweep_before_anything_runs(tmp_path):
    """check_args of the script itself, for every variant, before a worker starts or a file is written."""
    for spec, message in [("mi_pg:num_envs=0", "--num-envs must be >= 1"),
                          ("mi_pg:total_timesteps=1280", "sets --total-timesteps, which the benchmark sets")]:
        with pytest.raises(SweepError, match=message):
            run_sweep(make_jobs(["ipg", spec], ["climbing"], [1], common=TINY), Results(tmp_path / "r.json"),
                      task=fake_run, progress=False)
    assert not (tmp_path / "r.json").exists()


def test_the_benchmark_command_rejects_a_bad_grid_without_a_traceback(tmp_path):
    out = tmp_path / "m"
    result = subprocess.run([sys.executable, "benchmarks/matrix_games.py", "--algos", "mi_pg", "--grid",
                             "learnin_rate=1e-3", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    assert "error: --grid learnin_rate: mi_pg has no flag 'learnin_rate'" in result.stderr
    assert "Traceback" not in result.stderr and not out.with_suffix(".json").exists()


# ============================ the results file ============================
def test_run_order_does_not_depend_on_completion_order_or_interruptions(tmp_path):
    """Results.put places a run by its job's position, so any finishing order and any split into sessions give
    the same file; a saved run outside the sweep keeps its place, a replaced run its own."""
    sweep = make_jobs(["mi_pg", "ipg"], ["climbing", "penalty"], [1, 2, 3])
    keys = [run_key(job) for job in sweep]
    other = {**make_job("iql", "climbing", 9), "summary": {}}
    orders = [list(range(12)), list(reversed(range(12))), [5, 0, 11, 3, 7, 1, 9, 2, 10, 4, 8, 6]]
    files = []
    for i, order in enumerate(orders):
        results = Results(tmp_path / f"{i}.json")
        results.runs = [other]
        for session in (order[:4], order[4:]):  # interrupted after 4 runs, then resumed from the saved file
            for k in session:
                results.put({**sweep[k], "summary": {"n": k}}, keys)
            results.save()
            results = Results(tmp_path / f"{i}.json")
        files.append((tmp_path / f"{i}.json").read_text())
        assert [run["summary"].get("n") for run in results.runs] == [None, *range(12)]
    assert files[0] == files[1] == files[2]
    results.put({**sweep[5], "summary": {"n": "again"}}, keys)
    assert results.runs[6]["summary"] == {"n": "again"}


def test_a_crash_while_saving_leaves_the_saved_file_whole(tmp_path, monkeypatch):
    results = Results(tmp_path / "r.json")
    results.runs = [{**make_job("mi_pg", "climbing", 1), "summary": {"x": 1}, "scalars": {}}]
    results.save()
    before = (tmp_path / "r.json").read_text()
    results.runs.append({**make_job("mi_pg", "climbing", 2), "summary": {"x": 2}, "scalars": {}})

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        results.save()
    assert (tmp_path / "r.json").read_text() == before
    assert len(Results(tmp_path / "r.json").runs) == 1 and [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("name", ["matrix_games", "matrix_games_T25", "private_games", "baselines_high_entropy",
                                  "simple_spread"])
def test_report_only_reproduces_the_saved_tables(name):
    """--report-only's Markdown from each saved results file is the committed one, byte for byte."""
    path = ROOT / "benchmarks" / "results" / name
    results = Results(path.with_suffix(".json"))
    if name == "simple_spread":
        markdown = simple_spread.report({"runs": results.runs, **results.extra, "footer": results.footer})
    else:
        algos = list(dict.fromkeys(run["algo"] for run in results.runs))
        markdown = matrix_games.report(results.runs, algos, results.extra["cli_seconds"], results.footer)
    assert markdown == path.with_suffix(".md").read_text()


def test_files_from_before_the_runner_are_read(tmp_path):
    """simple_spread.json used to keep no start and the training curve under "curve"."""
    legacy = {"algo": "mi_pg", "env_id": "simple_spread", "init_prob": None, "seed": 1, "common": {},
              "read_scalars": True, "summary": {"decentralized_return_greedy": -37.0}, "curve": [[1, 2], [-50, -40]]}
    (tmp_path / "old.json").write_text(json.dumps({"runs": [legacy], "speed": {"x": 1}, "footer": "made"}))
    results = Results(tmp_path / "old.json")
    (run,) = results.runs
    assert run["start"] == "uniform" and run["scalars"] == {"charts/episodic_return": [[1, 2], [-50, -40]]}
    assert "read_scalars" not in run and "curve" not in run and "settings" not in run
    assert run_key(run) == run_key(make_job("mi_pg", "simple_spread", 1))
    assert results.extra == {"speed": {"x": 1}} and results.footer == "made"


# ============================ resuming ============================
def test_resume_skips_saved_runs_and_redoes_changed_ones(tmp_path):
    path = tmp_path / "r.json"
    sweep = make_jobs(["mi_pg", "iql"], ["climbing"], [1, 2], common=TINY)
    first = run_sweep(sweep, Results(path), task=fake_run, workers=2, progress=False)
    assert (len(first.trained), first.reused) == (4, 0) and len(Results(path).runs) == 4
    again = run_sweep(sweep, Results(path), task=fake_run, workers=2, progress=False)
    assert (len(again.trained), again.reused) == (0, 4)
    assert without_wall_time(again.records) == without_wall_time(first.records)

    # a saved run made with other settings (here: as if mi_pg's default learning rate had changed) is redone
    saved = json.loads(path.read_text())
    saved["runs"][0]["settings"]["learning_rate"] = 0.5
    path.write_text(json.dumps(saved))
    changed = run_sweep(sweep, Results(path), task=fake_run, workers=2, progress=False)
    assert [job["algo"] for job in changed.trained] == ["mi_pg"] and changed.reused == 3
    assert Results(path).runs[0]["settings"]["learning_rate"] == 0.01

    # a flag added to a script after its runs were saved (as if iql's --obs-agent-id were new: the saved settings
    # lack it) changes nothing while the runs keep the flag's default
    saved = json.loads(path.read_text())
    for run in saved["runs"]:
        run["settings"].pop("obs_agent_id", None)
    path.write_text(json.dumps(saved))
    kept = run_sweep(sweep, Results(path), task=fake_run, workers=2, progress=False)
    assert (len(kept.trained), kept.reused) == (0, 4)

    # a changed common flag is another run (another key): with --add both are kept
    more = make_jobs(["mi_pg"], ["climbing"], [1], common={**TINY, "total_timesteps": 2560})
    with pytest.raises(SweepError, match="holds 4 runs outside this sweep"):
        run_sweep(more, Results(path), task=fake_run, progress=False)
    added = run_sweep(more, Results(path), add=True, task=fake_run, workers=1, progress=False)
    assert len(added.trained) == 1 and len(Results(path).runs) == 5
    redone = run_sweep(sweep, Results(path), add=True, rerun=True, task=fake_run, workers=2, progress=False)
    assert (len(redone.trained), redone.reused) == (4, 0) and len(Results(path).runs) == 5


# A small real sweep, the reference for the tests below: made once, on the local pool, before Ray starts here.
SMALL_SWEEP = make_jobs(["mi_pg", "iql"], ["climbing"], [1, 2], common=TINY, read_scalars=["charts/episodic_return"])


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory) -> list[dict]:
    run_one(SMALL_SWEEP[0])  # imports and first-run set-up here, not in every forked worker (~5 s each)
    path = tmp_path_factory.mktemp("local") / "r.json"
    outcome = run_sweep(SMALL_SWEEP, Results(path), workers=2, progress=False)
    assert len(outcome.trained) == 4 and not outcome.failed
    return Results(path).runs


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt in this process, as it does at a terminal. A shell starts its background jobs
    with SIGINT ignored, and Python keeps it ignored, so a test suite started in the background (`bash .ci/run &`)
    would not see the test's Ctrl-C at all."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupted_sweep_resumes_to_the_same_file(local_runs, tmp_path, monkeypatch, ctrl_c_raises):
    """Ctrl-C (SIGINT to the driver) in the middle, then the same sweep again: the finished runs are kept as they
    were (same wall time: not trained again), the rest are trained, and the file equals an uninterrupted one's."""
    path = tmp_path / "cut.json"
    monkeypatch.setenv("SWEEP_TEST_RESULTS", str(path))
    with pytest.raises(KeyboardInterrupt):  # one worker: the runs go in job order, mi_pg's two, then iql's
        run_sweep(SMALL_SWEEP, Results(path), workers=1, task=interrupts_at_iql, progress=False)
    before = Results(path).runs
    assert [(run["algo"], run["seed"]) for run in before] == [("mi_pg", 1), ("mi_pg", 2)]
    resumed = run_sweep(SMALL_SWEEP, Results(path), workers=2, progress=False)
    assert [job["algo"] for job in resumed.trained] == ["iql", "iql"] and resumed.reused == 2
    after = Results(path).runs
    assert after[:2] == before  # wall_time_s included: not re-run
    assert without_wall_time(after) == without_wall_time(local_runs)


def test_kill_stops_a_background_sweep_and_saves_what_finished(tmp_path):
    """A benchmark command started in the background, where the shell leaves SIGINT (Ctrl-C) ignored, stops on
    `kill PID` (SIGTERM) as on Ctrl-C: the run in flight is stopped (no worker process outlives the command), the
    finished runs are saved, the exit status is 130."""
    out = tmp_path / "killed"
    in_background = ["sh", "-c", 'trap "" INT; exec "$0" "$@"']  # SIGINT ignored, as for `command &` in a script
    command = [sys.executable, "benchmarks/matrix_games.py", "--algos", "ipg", "--games", "climbing", "--starts",
               "uniform", "--seeds", "40", "--total-timesteps", "1280", "--workers", "1", "--out", str(out)]
    process = subprocess.Popen(in_background + command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    results, deadline = out.with_suffix(".json"), time.monotonic() + 120
    while not (results.exists() and Results(results).runs) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    time.sleep(1)
    assert process.poll() is None  # Ctrl-C's signal is ignored in the background
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted:" in stderr, stderr
    assert 1 <= len(Results(results).runs) < 40
    workers = [proc for proc in Path("/proc").glob("[0-9]*") if str(out) in proc_cmdline(proc)]
    assert not workers  # forked workers carry the command's arguments, the results path among them


def proc_cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""


def test_local_pool_retries_a_run_whose_worker_died(local_runs, tmp_path, monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv("SWEEP_TEST_MARKER", str(marker))
    outcome = run_sweep(SMALL_SWEEP, Results(tmp_path / "r.json"), workers=2, task=dies_once_then_runs,
                        progress=False)
    assert marker.exists() and not outcome.failed
    assert without_wall_time(Results(tmp_path / "r.json").runs) == without_wall_time(local_runs)
    marker.unlink()
    failing = run_sweep(SMALL_SWEEP, Results(tmp_path / "none.json"), workers=2, max_retries=0,
                        task=dies_once_then_runs, progress=False)
    assert marker.exists() and len(failing.failed) >= 1  # a seed-2 run, and any that shared its broken pool
    assert "worker process died" in next(iter(failing.failed.values()))
    assert len(Results(tmp_path / "none.json").runs) == 4 - len(failing.failed)  # the others are saved


# ============================ Ray ============================
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no attempt to report usage over the network
    # address "local": a new instance, not one that `ray start` may have left on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env=ray_runtime_env(),
             log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_and_the_local_pool_give_the_same_runs(local_runs, ray_instance, tmp_path):
    outcome = run_sweep(SMALL_SWEEP, Results(tmp_path / "r.json"), ray_address="auto", progress=False)
    assert outcome.backend.startswith("Ray") and not outcome.failed
    assert without_wall_time(Results(tmp_path / "r.json").runs) == without_wall_time(local_runs)


def test_ray_retries_a_task_whose_worker_died(local_runs, ray_instance, tmp_path):
    marker = tmp_path / "died"

    def dies_once(job):  # defined here: Ray ships it by value, with the marker's path
        if job["seed"] == 2 and not marker.exists():
            marker.touch()
            os._exit(1)
        return run_one(job)

    outcome = run_sweep(SMALL_SWEEP[:2], Results(tmp_path / "r.json"), ray_address="auto", task=dies_once,
                        progress=False)
    assert marker.exists() and not outcome.failed
    assert without_wall_time(Results(tmp_path / "r.json").runs) == without_wall_time(local_runs[:2])

    marker.unlink()  # without retries the run whose worker died fails, and it costs only itself
    failing = run_sweep(SMALL_SWEEP[:2], Results(tmp_path / "none.json"), ray_address="auto", task=dies_once,
                        max_retries=0, progress=False)
    assert list(failing.failed) == [run_key(SMALL_SWEEP[1])]
    assert without_wall_time(Results(tmp_path / "none.json").runs) == without_wall_time(local_runs[:1])
