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
from envs.mpe import DEFAULT_EPISODE_LENGTH as MPE_EPISODE_LENGTH
from envs.mpe import MPE_ENV_IDS, BatchedMPE, make_mpe_env
from envs.mpe import N_AGENTS as MPE_N_AGENTS
from envs.n_agent_trap import ENV_ID as N_AGENT_TRAP_ID
from envs.n_agent_trap import n_agent_trap_payoff
from envs.private_games import PRIVATE_GAMES, BatchedPrivateSignalGame, PrivateSignalGame, make_private_game

ENV_IDS = MATRIX_ENV_IDS + (N_AGENT_TRAP_ID,) + tuple(PRIVATE_GAMES) + MPE_ENV_IDS


def _matrix_payoff(env_id: str, payoff, penalty_k: float, num_agents: int | None, num_actions: int | None):
    """The payoff of a matrix game: generated for the N-agent trap, registered or --payoff otherwise."""
    if env_id == N_AGENT_TRAP_ID:
        if payoff is not None:
            raise ValueError(f"--payoff only applies to --env-id custom (got --env-id {env_id})")
        return n_agent_trap_payoff(num_agents, num_actions)
    return resolve_payoff(env_id, payoff, penalty_k)


def _family(env_id: str, payoff, episode_length: int | None, num_agents=None, num_actions=None) -> tuple[str, int]:
    """("matrix" | "private" | "mpe", the episode length: the flag's, or the family's default when None)."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown --env-id {env_id!r}; registered: {', '.join(ENV_IDS)}")
    if num_agents is not None and env_id not in (N_AGENT_TRAP_ID, *MPE_ENV_IDS):
        raise ValueError(f"--num-agents only applies to --env-id {N_AGENT_TRAP_ID}, {', '.join(MPE_ENV_IDS)} "
                         f"(got --env-id {env_id})")
    if num_actions is not None and env_id != N_AGENT_TRAP_ID:
        raise ValueError(f"--num-actions only applies to --env-id {N_AGENT_TRAP_ID} (got --env-id {env_id})")
    family = "private" if env_id in PRIVATE_GAMES else "mpe" if env_id in MPE_ENV_IDS else "matrix"
    if family != "matrix" and payoff is not None:
        raise ValueError(f"--payoff only applies to --env-id custom (got --env-id {env_id})")
    # a matrix game is one round unless repeated; MPE's simple_spread is played for 25 steps
    return family, (MPE_EPISODE_LENGTH if family == "mpe" else 1) if episode_length is None else episode_length


def make_env(
    env_id: str,
    payoff: str | None = None,
    episode_length: int | None = None,
    penalty_k: float = -100.0,
    num_signals: int = 2,
    signal_bonus: float = 5.0,
    num_agents: int | None = None,
    num_actions: int | None = None,
):
    """A PettingZoo ParallelEnv for a registered game (or `custom` with a JSON --payoff)."""
    family, T = _family(env_id, payoff, episode_length, num_agents, num_actions)
    if family == "mpe":
        return make_mpe_env(env_id, T, num_agents=MPE_N_AGENTS if num_agents is None else num_agents)
    if family == "private":
        return make_private_game(env_id, None, None, num_signals, signal_bonus, T)
    return MatrixGame(_matrix_payoff(env_id, payoff, penalty_k, num_agents, num_actions), T, name=env_id)


def make_vec_env(
    env_id: str,
    num_envs: int,
    payoff: str | None = None,
    episode_length: int | None = None,
    penalty_k: float = -100.0,
    device="cpu",
    num_signals: int = 2,
    signal_bonus: float = 5.0,
    num_agents: int | None = None,
    num_actions: int | None = None,
):
    """`num_envs` copies of the game as one batched, tensor-valued environment."""
    if num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {num_envs}")
    family, T = _family(env_id, payoff, episode_length, num_agents, num_actions)
    if family == "mpe":
        return BatchedMPE(num_envs, T, device, env_id, MPE_N_AGENTS if num_agents is None else num_agents)
    if family == "private":
        return make_private_game(env_id, num_envs, None, num_signals, signal_bonus, T, device)
    payoff = _matrix_payoff(env_id, payoff, penalty_k, num_agents, num_actions)
    return BatchedMatrixGame(payoff, num_envs, T, device, env_id)


__all__ = [
    "CUSTOM_ID",
    "ENV_IDS",
    "MPE_ENV_IDS",
    "N_AGENT_TRAP_ID",
    "PRIVATE_GAMES",
    "REGISTRY",
    "BatchedMPE",
    "BatchedMatrixGame",
    "BatchedPrivateSignalGame",
    "MatrixGame",
    "PrivateSignalGame",
    "expected_payoff",
    "make_env",
    "make_mpe_env",
    "make_private_game",
    "make_vec_env",
    "n_agent_trap_payoff",
    "parse_payoff",
    "resolve_payoff",
]
