"""benchmarks/simple_spread.py: which published number a row is compared with, and the paper's budgets."""

from benchmarks import simple_spread as bench


def test_published_numbers_only_for_the_scripts_as_the_paper_ran_them():
    assert bench.published("qmix") == bench.PUBLISHED["qmix"]
    assert bench.published("qmix:preset=epymarl") == bench.PUBLISHED["qmix"]  # EPyMARL's own configuration
    assert bench.published(bench.IPPO) == bench.PUBLISHED["ippo"]
    assert bench.published("qmix:learning_rate=1e-3") is None  # a tuned variant is not the paper's method as run
    assert bench.published("mi_pg") is None


def test_the_papers_budgets():
    assert bench.budget("mappo", "epymarl", None) == 20_000_000
    assert bench.budget("qmix:preset=epymarl", "epymarl", None) == 2_000_000
    assert bench.budget("mappo", "defaults", None) == 2_000_000
    assert bench.budget("mappo", "epymarl", 1000) == 1000
