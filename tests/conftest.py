"""Shared test helpers: run any script of algos/ in-process, inside a temporary directory; or several runs at once,
spread over the machine's cores (the statistical tests train one run per seed)."""

import importlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def train(algo: str, overrides: dict) -> dict:
    """One quiet run of algos/{algo}.py with these Args fields, in the current directory; its summary."""
    module = importlib.import_module(f"algos.{algo}")
    return module.train(module.Args(quiet=True, **overrides))


@pytest.fixture
def run_algo(tmp_path, monkeypatch):
    """run_algo("mi_pg", env_id="climbing", seed=3) -> the summary dict; logs go to a temp runs/."""
    monkeypatch.chdir(tmp_path)
    return lambda algo, **overrides: train(algo, overrides)


def train_in(run_dir: str, algo: str, overrides: dict) -> dict:
    """One run in a worker process, in its own directory: what run_algo(algo, **overrides) returns. (The worker
    found this function by importing tests.conftest, so the repository is already on its sys.path.)"""
    os.chdir(run_dir)
    return train(algo, overrides)


@pytest.fixture(scope="session")
def worker_pool():
    """At most two worker processes for the whole session (CI has two cores), started fresh ("spawn": no state
    is inherited from the test process) and reused, so torch is imported once per worker. Every run seeds its own
    generators, so a run's summary does not depend on which worker trains it or what ran there before
    (tests/test_mi_pg_ipg.py checks this against run_algo)."""
    workers = max(1, min(2, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def run_many(tmp_path, worker_pool):
    """run_many([("mi_pg", {"seed": 1}), ("ipg", {"seed": 1})]) -> their summaries, in order, trained in parallel."""

    def run(jobs: list[tuple[str, dict]]) -> list[dict]:
        futures = []
        for algo, overrides in jobs:
            run_dir = tempfile.mkdtemp(prefix=f"{algo}-", dir=tmp_path)  # a directory of its own per run
            futures.append(worker_pool.submit(train_in, run_dir, algo, overrides))
        return [future.result() for future in futures]

    return run


@pytest.fixture
def run_seeds(run_many):
    """run_seeds("mi_pg", [1, 2, 3], env_id="climbing") -> [summary of each seed], trained in parallel."""

    def run(algo: str, seeds, **overrides) -> list[dict]:
        return run_many([(algo, {**overrides, "seed": seed}) for seed in seeds])

    return run


@pytest.fixture(scope="session")
def script_help():
    """script_help("qmix") -> what `python algos/qmix.py --help` prints, after checking that it exits 0. The first
    call starts every script's --help at once (each process pays torch's import); later calls read the results."""
    processes, texts = {}, {}

    def get(script: str) -> str:
        if not processes:
            for path in sorted((ROOT / "algos").glob("[!_]*.py")):
                processes[path.stem] = subprocess.Popen([sys.executable, str(path), "--help"], cwd=ROOT, text=True,
                                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if script not in texts:
            out, err = processes[script].communicate(timeout=180)
            assert processes[script].returncode == 0, (script, err)
            texts[script] = out
        return texts[script]

    yield get
    for process in processes.values():
        process.kill()
        process.communicate()
