"""--capture-video: the trained agents' greedy episodes drawn by mpe2's renderer into runs/{run_name}/videos, the
episode the batched env plays from the same seed, and a clear error on a game with nothing to draw."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from algos import ipg
from envs.mpe import BatchedMPE, record_episodes

ROOT = Path(__file__).resolve().parents[1]


def test_capture_video_writes_three_animated_gifs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ipg.train(ipg.Args(env_id="simple_spread", quiet=True, num_envs=4, total_timesteps=200, num_evals=0,
                       eval_episodes=4, capture_video=True, episode_length=5))
    gifs = sorted(tmp_path.glob("runs/*/videos/episode_*.gif"))
    assert len(gifs) == 3
    with Image.open(gifs[0]) as gif:
        # the start and a frame per step; the GIF writer merges identical neighbours, and the first step never
        # moves anything (mpe2 moves with the old velocity, which starts at 0)
        assert 2 < gif.n_frames <= 5 + 1


def test_recorded_episode_is_the_batched_one(tmp_path):
    """The drawn episode is played in mpe2 from the same seed with the same policy: its start is the batched env's."""
    seen = []

    def still(obs, state):
        seen.append(obs.clone())
        return torch.zeros((1, 3), dtype=torch.long)

    record_episodes(still, [7], tmp_path, episode_length=3)
    first, _ = BatchedMPE(1, 3).reset(seed=7)
    np.testing.assert_array_equal(seen[0].numpy(), first.numpy())


def test_capture_video_on_a_matrix_game_is_a_clear_error():
    result = subprocess.run([sys.executable, "algos/ipg.py", "--capture-video"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0
    assert "--capture-video" in result.stderr and "simple_spread" in result.stderr
    assert "Traceback" not in result.stderr
