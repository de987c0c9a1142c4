"""Environments shared by every script in `algos/`.

`make_env` gives the PettingZoo Parallel API; `make_vec_env` gives the batched fast path
the scripts train on. Both take the same arguments as the scripts' common flags.
"""

from envs.matrix_games import (
    CUSTOM_ID,
    REGISTRY,
    BatchedMatrixGame,
    MatrixGame,
    expected_payoff,
    parse_payoff,
    resolve_payoff,
)
from envs.matrix_games import ENV_IDS as MATRIX_ENV_IDS
from envs.private_games import PRIVATE_GAMES, BatchedPrivateSignalGame, PrivateSignalGame, make_private_game

ENV_IDS = MATRIX_ENV_IDS + tuple(PRIVATE_GAMES)


def _check_private(env_id: str, payoff) -> bool:
    """Whether env_id names a private-signal game; rejects unknown ids with the full list."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown --env-id {env_id!r}; registered: {', '.join(ENV_IDS)}")
    if env_id in PRIVATE_GAMES and payoff is not None:
        raise ValueError(f"--payoff only applies to --env-id custom (got --env-id {env_id})")
    return env_id in PRIVATE_GAMES


def make_env(
    env_id: str,
    payoff: str | None = None,
    episode_length: int = 1,
    penalty_k: float = -100.0,
    num_signals: int = 2,
    signal_bonus: float = 5.0,
):
    """A PettingZoo ParallelEnv for a registered game (or `custom` with a JSON --payoff)."""
    if _check_private(env_id, payoff):
        return make_private_game(env_id, None, None, num_signals, signal_bonus, episode_length)
    return MatrixGame(resolve_payoff(env_id, payoff, penalty_k), episode_length, name=env_id)


def make_vec_env(
    env_id: str,
    num_envs: int,
    payoff: str | None = None,
    episode_length: int = 1,
    penalty_k: float = -100.0,
    device="cpu",
    num_signals: int = 2,
    signal_bonus: float = 5.0,
):
    """`num_envs` copies of the game as one batched, tensor-valued environment."""
    if num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
    if _check_private(env_id, payoff):
        return make_private_game(env_id, num_envs, None, num_signals, signal_bonus, episode_length, device)
    return BatchedMatrixGame(resolve_payoff(env_id, payoff, penalty_k), num_envs, episode_length, device, env_id)


__all__ = [
    "CUSTOM_ID",
    "ENV_IDS",
    "PRIVATE_GAMES",
    "REGISTRY",
    "BatchedMatrixGame",
    "BatchedPrivateSignalGame",
    "MatrixGame",
    "PrivateSignalGame",
    "expected_payoff",
    "make_env",
    "make_private_game",
    "make_vec_env",
    "parse_payoff",
    "resolve_payoff",
]
