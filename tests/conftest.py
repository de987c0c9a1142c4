"""Shared test helpers: run any script of algos/ in-process, inside a temporary directory."""

import importlib

import pytest


@pytest.fixture
def run_algo(tmp_path, monkeypatch):
    """run_algo("mi_pg", env_id="climbing", seed=3) -> the summary dict; logs go to a temp runs/."""
    monkeypatch.chdir(tmp_path)

    def run(algo: str, **overrides) -> dict:
        module = importlib.import_module(f"algos.{algo}")
        return module.train(module.Args(quiet=True, **overrides))

    return run
