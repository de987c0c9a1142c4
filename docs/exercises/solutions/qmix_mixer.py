"""Solution: QMixer.forward. The project's own version is in algos/qmix.py."""

import torch
import torch.nn.functional as F


def forward(self, agent_qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    batch_shape = agent_qs.shape[:-1]
    qs = agent_qs.reshape(-1, 1, self.n_agents)  # (M, 1, N)
    states = states.reshape(-1, states.shape[-1])  # (M, state_dim)
    w1 = self.non_negative(self.hyper_w1(states)).view(-1, self.n_agents, self.embed_dim)  # (M, N, E), >= 0
    b1 = self.hyper_b1(states).view(-1, 1, self.embed_dim)
    hidden = F.elu(torch.bmm(qs, w1) + b1)  # (M, 1, E)
    w_final = self.non_negative(self.hyper_w_final(states)).view(-1, self.embed_dim, 1)  # (M, E, 1), >= 0
    q_tot = torch.bmm(hidden, w_final) + self.hyper_v(states).view(-1, 1, 1)
    return q_tot.view(batch_shape)
