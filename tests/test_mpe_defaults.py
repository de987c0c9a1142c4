"""Game-dependent defaults: mi_pg's entropy bonus and optimization are the game's unless given. The matrix and
private-signal games keep the method's plain policy gradient (one step per batch at learning rate 1e-2, entropy
0.1); simple_spread, whose 125 joint actions 0.1 holds at uniform and whose long runs stall at one step per batch,
gets entropy 0.01 and MAPPO's PPO-style updates (2 epochs, learning rate 5e-3, gradient clip 10)."""

import pytest

from algos import mi_pg

PROPOSAL = {"ent_coef": 0.1, "learning_rate": 1e-2, "update_epochs": 1, "max_grad_norm": 0.5}
MAPPO_LIKE = {"ent_coef": 0.01, "learning_rate": 5e-3, "update_epochs": 2, "max_grad_norm": 10.0}


@pytest.mark.parametrize(("env_id", "expected"), [("coordination-2x2", PROPOSAL), ("signal-climbing", PROPOSAL),
                                                  ("n-agent-trap", PROPOSAL), ("simple_spread", MAPPO_LIKE)])
def test_mi_pg_defaults_are_the_games(env_id, expected):
    args = mi_pg.Args(env_id=env_id)
    mi_pg.check_args(args)
    assert {field: getattr(args, field) for field in expected} == expected
    # a value given on the command line wins, on every game
    given = mi_pg.Args(env_id=env_id, ent_coef=0.3, learning_rate=1e-3, update_epochs=3, max_grad_norm=1.0)
    mi_pg.check_args(given)
    assert (given.ent_coef, given.learning_rate, given.update_epochs, given.max_grad_norm) == (0.3, 1e-3, 3, 1.0)
