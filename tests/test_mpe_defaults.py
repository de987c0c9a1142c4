"""Game-dependent defaults: mi_pg's entropy bonus is the game's unless --ent-coef is given (0.1 on the matrix and
private-signal games, 0.01 on simple_spread, whose 125 joint actions 0.1 holds at uniform)."""

import pytest

from algos import mi_pg


@pytest.mark.parametrize(("env_id", "expected"), [("coordination-2x2", 0.1), ("signal-climbing", 0.1),
                                                  ("simple_spread", 0.01)])
def test_mi_pg_entropy_bonus_defaults_to_the_games(env_id, expected):
    args = mi_pg.Args(env_id=env_id)
    mi_pg.check_args(args)
    assert args.ent_coef == expected
    given = mi_pg.Args(env_id=env_id, ent_coef=0.3)
    mi_pg.check_args(given)
    assert given.ent_coef == 0.3
