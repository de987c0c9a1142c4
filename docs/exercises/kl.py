"""Exercise: the KL term of the MI-annealed policy gradient (algos/mi_pg.py, docs: algos/mi_pg.md).

Fill in `kl_joint_to_product`, then check it with the project's own tests:

    python docs/exercises/check.py kl docs/exercises/kl.py      (or your copy of this file)
"""

import torch


def kl_joint_to_product(joint_log_probs: torch.Tensor, product_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi_jt || prod_i pi_i) for every state in a batch, exact over the joint action space.

    joint_log_probs:   (B, J), log pi_jt(a | s) for each of the J = prod_i |A_i| joint actions (a log-softmax)
    product_log_probs: (B, J), log prod_i pi_i(a_i | o_i) for the same joint actions, in the same order
    returns:           (B,), KL(pi_jt(. | s) || prod_i pi_i(. | o_i))
                       = sum_a pi_jt(a) (log pi_jt(a) - log prod_i pi_i(a_i))

    The checks include logits of +-50: probabilities of e^-100 underflow in float32. Work from the
    log-probabilities you are given; never take the log of a probability. Where pi_jt(a) is 0, the term must be
    exactly 0 (not 0 * inf = nan), and the gradient must stay finite.
    """
    raise NotImplementedError("exercise: compute KL(pi_jt || prod_i pi_i) from the two log-probability tables")
