"""Environments shared by every script in `algos/`.

`make_env` gives the PettingZoo Parallel API; `make_vec_env` gives the batched fast path
the scripts train on. Both take the same arguments as the scripts' common flags.
"""

from envs.matrix_games import (
    CUSTOM_ID,
    ENV_IDS,
    REGISTRY,
    BatchedMatrixGame,
    MatrixGame,
    expected_payoff,
    parse_payoff,
    resolve_payoff,
)


def make_env(env_id: str, payoff: str | None = None, episode_length: int = 1, penalty_k: float = -100.0):
    """A PettingZoo ParallelEnv for a registered game (or `custom` with a JSON --payoff)."""
    return MatrixGame(resolve_payoff(env_id, payoff, penalty_k), episode_length, name=env_id)


def make_vec_env(
    env_id: str,
    num_envs: int,
    payoff: str | None = None,
    episode_length: int = 1,
    penalty_k: float = -100.0,
    device="cpu",
):
    """`num_envs` copies of the game as one batched, tensor-valued environment."""
    if num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
    return BatchedMatrixGame(resolve_payoff(env_id, payoff, penalty_k), num_envs, episode_length, device, env_id)


__all__ = [
    "CUSTOM_ID",
    "ENV_IDS",
    "REGISTRY",
    "BatchedMatrixGame",
    "MatrixGame",
    "expected_payoff",
    "make_env",
    "make_vec_env",
    "parse_payoff",
    "resolve_payoff",
]
