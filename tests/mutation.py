"""Mutation check: does the test suite fail when a plausible bug slips into a script of algos/?

Each mutation below is a one-line bug (a sign flipped, a term dropped, a detach moved, an input swapped, a schedule
frozen, the wrong network saved, ...) with the tests that should catch it. For every mutation the check copies the
repository to a temporary directory, applies the bug there (the working tree is never touched), runs those tests
with pytest, and reports the mutation as CAUGHT (a test failed) or SURVIVED (all passed: a hole in the suite).

    python tests/mutation.py                  # every mutation (measured: 20 minutes on two shared cores)
    python tests/mutation.py --script coma    # one script's mutations (repeatable flag)
    python tests/mutation.py --id vdn-time-limit-is-terminal
    python tests/mutation.py --list           # the mutations and their tests; nothing is run
    python tests/mutation.py --check-only     # only checks that every mutation still applies and every
                                              # named test exists (seconds)

Before the mutations it runs all the selected tests once on the unmutated copy (skip with --no-baseline): a test
that fails without any bug would make every mutation look caught. Exit status: 0 if every mutation was caught;
1 if any survived, errored (pytest could not run the tests, or timed out) or is STALE, i.e. its original text is no
longer found exactly once in the script (the script changed: update the mutation, do not delete it silently);
2 if the baseline run fails. Not part of CI (pytest collects test_*.py files only); run it after changing a script
or its tests, on a quiet machine (`nice -n 5` on a shared one).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", "runs", "site", "__pycache__", "*.pyc", ".ruff_cache", ".pytest_cache",
                                ".ipynb_checkpoints", "wandb")


@dataclass(frozen=True)
class Mutation:
    id: str
    script: str  # algos/<script>.py
    bug: str  # what goes wrong, in words
    original: str  # text that must occur exactly once in the script
    mutated: str
    tests: tuple[str, ...]  # pytest node ids (relative to the repository), the quickest first


def T(path: str, *names: str) -> tuple[str, ...]:
    """Node ids `tests/<path>::<name>` for each name."""
    return tuple(f"tests/{path}::{name}" for name in names)


SAVED = "test_saved_models.py"
SAVED_TEST = "test_saved_file_reproduces_the_summary_tables"
TIME_LIMITS = "test_time_limits.py"


def saves(script: str, network: str, deployed: str = "actor", bug: str = "", name: str = "") -> Mutation:
    """--save-model writes `network` instead of the deployed one: caught by the reload-and-reproduce test."""
    line = 'torch.save({}.state_dict(), f"runs/{{run_name}}/{{args.exp_name}}.actors.pt")'
    return Mutation(f"{script}-saves-{name or network.replace('_', '-')}", script,
                    bug or f"--save-model saves {network}", line.format(deployed), line.format(network),
                    saved_test(script))


def saved_test(script: str) -> tuple[str, ...]:
    return T(SAVED, f"{SAVED_TEST}[{script}]")


def epsilon_frozen(script: str, decay: str = "return start_e + progress * (end_e - start_e)") -> Mutation:
    return Mutation(f"{script}-epsilon-frozen", script, "epsilon never decays from --start-e", decay, "return start_e",
                    T("test_schedules.py", f"test_epsilon_anneals_linearly_to_its_end_value[{script}]"))


def time_limit_is_terminal(script: str) -> Mutation:
    return Mutation(f"{script}-time-limit-is-terminal", script, "no bootstrap at simple_spread's time limit",
                    "terminal = done.float() * (args.time_limit_terminal or not envs.ends_by_time_limit)",
                    "terminal = done.float()",
                    T(TIME_LIMITS, f"test_value_targets_bootstrap_only_at_a_time_limit[{script}]"))


def time_limit_terminal_ignored(script: str) -> Mutation:
    return Mutation(f"{script}-time-limit-terminal-ignored", script, "--time-limit-terminal (EPyMARL's preset) ignored",
                    "terminal = done.float() * (args.time_limit_terminal or not envs.ends_by_time_limit)",
                    "terminal = done.float() * (not envs.ends_by_time_limit)",
                    T(TIME_LIMITS, f"test_time_limit_terminal_ends_the_episode_at_a_time_limit[{script}]"))


def observe_time_ignored(script: str) -> Mutation:
    return Mutation(f"{script}-observe-time-ignored", script, "--observe-time ignored: the agents see no clock",
                    "envs, eval_envs = ElapsedTime(envs), ElapsedTime(eval_envs)", "pass",
                    T(TIME_LIMITS, f"test_observe_time_reaches_the_saved_network[{script}]"))


def agent_id_ignored(script: str) -> Mutation:
    return Mutation(f"{script}-obs-agent-id-ignored", script, "--obs-agent-id ignored: the per-agent heads network",
                    "args.hidden_size, args.obs_agent_id,\n                                      args.recurrent)",
                    "args.hidden_size, False,\n                                      args.recurrent)",
                    T("test_replay_options.py", f"test_obs_agent_id_reaches_the_saved_network[{script}]"))


def agent_id_zeroed(script: str) -> Mutation:
    return Mutation(f"{script}-agent-id-zeroed", script, "the one-hot ids appended as zeros: the agents look alike",
                    "ids = torch.eye(self.n_agents, device=obs.device)",
                    "ids = torch.zeros(self.n_agents, self.n_agents)",
                    T("test_replay_options.py", f"test_obs_agent_id_is_one_network_reading_the_agents_id[{script}]"))


def recurrent_ignored(script: str) -> Mutation:
    return Mutation(f"{script}-recurrent-ignored", script, "--recurrent ignored: feed-forward agents",
                    "args.obs_agent_id,\n                                      args.recurrent)",
                    "args.obs_agent_id,\n                                      False)",
                    T("test_replay_options.py", f"test_recurrent_reaches_training_and_the_saved_network[{script}]"))


def memory_not_carried(script: str) -> Mutation:
    return Mutation(f"{script}-memory-not-carried", script, "acting agents forget their memory at every step",
                    "qs, self.memory = self.network.step(obs, self.memory)",
                    "qs, _ = self.network.step(obs, self.memory)",
                    T("test_replay_options.py", f"test_recurrent_agents_act_as_training_unrolls_them[{script}]"))


def memory_kept_between_episodes(script: str) -> Mutation:
    return Mutation(f"{script}-memory-kept-between-episodes", script,
                    "the collecting agents carry their memory into the next episode",
                    "        collector.start_episodes()\n", "",
                    T("test_replay_options.py", f"test_recurrent_reaches_training_and_the_saved_network[{script}]"))


def unrolled_from_step_one(script: str) -> Mutation:
    return Mutation(f"{script}-target-unrolled-from-step-one", script,
                    "the target network's memory starts at step 1, not at the episode's first step",
                    "next_target_qs = [q[:, 1:] for q in target_network(b_obs)]",
                    "next_target_qs = target_network(b_obs[:, 1:])",
                    T("test_replay_options.py", f"test_recurrent_reaches_training_and_the_saved_network[{script}]"))


def one_gradient_step(script: str) -> Mutation:
    return Mutation(f"{script}-gradient-steps-ignored", script, "--gradient-steps ignored: one gradient step per round",
                    "for _ in range(args.gradient_steps):", "for _ in range(1):",
                    T("test_replay_options.py", f"test_gradient_steps_per_training_round[{script}]"))


def batch_standardization_ignored(script: str) -> Mutation:
    return Mutation(f"{script}-batch-standardization-ignored", script,
                    "--reward-standardization batch standardizes by the running statistics instead",
                    'running_rewards = args.standardize_rewards and args.reward_standardization == "running"',
                    'running_rewards = args.standardize_rewards',
                    T("test_replay_options.py",
                      f"test_reward_standardization_batch_uses_each_batchs_own_statistics[{script}]"))


def rewards_not_standardized(script: str) -> Mutation:
    return Mutation(f"{script}-rewards-not-standardized", script, "--standardize-rewards updates the statistics only",
                    "b_rewards = reward_stats.standardize(b_rewards)", "b_rewards = b_rewards",
                    T("test_replay_options.py", f"test_standardized_rewards_reach_the_targets[{script}-running]"))


def final_value_dropped(script: str) -> Mutation:
    return Mutation(f"{script}-time-limit-not-bootstrapped", script,
                    "a time limit treated as a real end (final value 0)",
                    ("final_value = critic(state).squeeze(-1) if envs.ends_by_time_limit "
                     "else torch.zeros(B, device=device)"),
                    "final_value = torch.zeros(B, device=device)",
                    T(TIME_LIMITS, f"test_policy_gradient_bootstraps_only_at_a_time_limit[time_limit-{script}]"))


def gae_next_value_final(script: str, *tests: str) -> Mutation:
    return Mutation(f"{script}-gae-never-bootstraps-between-rounds", script,
                    "GAE's next value is always the final one (0 after a real end)",
                    "next_value = values[t + 1] if t + 1 < T else final_value", "next_value = final_value",
                    T(TIME_LIMITS, "test_gae_against_hand_computation") + tests)


def rnn_preset(name: str, script: str, bug: str, original: str, mutated: str) -> Mutation:
    """A bug in --preset epymarl-rnn: caught by the test that compares it with the stored runs of its row."""
    test = f"test_the_rnn_preset_is_the_reported_configuration[{script}]"
    return Mutation(name, script, bug, original, mutated, T("test_simple_spread_benchmark.py", test))


def preset_overrides_named_flags(script: str) -> Mutation:
    preset_test = {"coma": T("test_coma_maddpg.py", "test_coma_epymarl_preset"),
                   "maddpg": T("test_coma_maddpg.py", "test_maddpg_epymarl_preset")}.get(
        script, T("test_replay_options.py", f"test_epymarl_preset[{script}]"))
    return Mutation(f"{script}-preset-overrides-named-flags", script,
                    "--preset replaces a flag named at its default value (--no-standardize-rewards ignored)",
                    " and field not in args.preset_keeps:", ":", preset_test)


def command_line_names_nothing(script: str) -> Mutation:
    return Mutation(f"{script}-command-line-names-nothing", script,
                    "the script never tells --preset which flags the command line named",
                    "cli_args.preset_keeps = flags_given(sys.argv[1:])", "cli_args.preset_keeps = ()",
                    T("test_replay_options.py",
                      f"test_a_flag_named_on_the_command_line_wins_over_the_preset[{script}]"))


MUTATIONS = [
    # ------------------------------------------------------------------ mi_pg
    Mutation("mi_pg-alpha-never-rises", "mi_pg", "alpha frozen at 0: never hands over to the product policy",
             "alpha = ramp(progress, args.alpha_start, args.alpha_end, args.alpha_shape)", "alpha = 0.0",
             T("test_schedules.py", "test_mi_pg_lambda_and_alpha_follow_their_ramps_to_their_end_values")),
    Mutation("mi_pg-no-kl-term", "mi_pg", "the KL weight frozen at 0 (no KL term)",
             "kl_coef = args.lambda_max * ramp(progress, args.lambda_start, args.lambda_end, args.lambda_shape)",
             "kl_coef = 0.0",
             T("test_mi_pg_ipg.py", "test_marginals_follow_the_joint_head_while_alpha_is_0")
             + T("test_schedules.py", "test_mi_pg_lambda_and_alpha_follow_their_ramps_to_their_end_values")),
    Mutation("mi_pg-kl-does-not-train-the-marginals", "mi_pg", "the product detached inside the KL",
             ", prod_log_probs).mean()", ", prod_log_probs.detach()).mean()",  # the KL's second argument
             T("test_mi_pg_ipg.py", "test_marginals_follow_the_joint_head_while_alpha_is_0")),
    gae_next_value_final("mi_pg", "tests/test_bootstrapping.py::test_advantage_bootstraps_between_rounds[mi_pg]"),
    Mutation("mi_pg-gae-without-discount", "mi_pg", "train() passes gamma = 0 to gae (input swapped for a constant)",
             "advantages = gae(reward_buf, value_buf, final_value, args.gamma, args.gae_lambda)",
             "advantages = gae(reward_buf, value_buf, final_value, 0.0, args.gae_lambda)",
             T("test_bootstrapping.py", "test_advantage_bootstraps_between_rounds[mi_pg]")),
    Mutation("mi_pg-acts-with-the-joint-head", "mi_pg", "the rollouts sample pi_jt whatever alpha",
             "acting = Categorical(logits=policy(obs, alpha)[2])", "acting = Categorical(logits=policy(obs, alpha)[0])",
             T("test_mi_pg_ipg.py", "test_with_alpha_1_it_acts_with_the_product_and_the_joint_head_never_moves")),
    Mutation("mi_pg-policy-gradient-sign", "mi_pg", "the policy-gradient loss's sign flipped (descends the return)",
             "pg_loss = -(b_adv[mb] * taken_log_probs).mean()", "pg_loss = (b_adv[mb] * taken_log_probs).mean()",
             T("test_mi_pg_ipg.py", "test_marginals_follow_the_joint_head_while_alpha_is_0")),
    saves("mi_pg", "joint_head", bug="--save-model saves the joint head, not the actors"),
    Mutation("mi_pg-ppo-ratio-inverted", "mi_pg",
             "PPO's ratio inverted (pi_old / pi: the surrogate descends the return)",
             "ratio = (taken_log_probs - b_old_log_probs[mb]).exp()",
             "ratio = (b_old_log_probs[mb] - taken_log_probs).exp()",
             T("test_mi_pg_ipg.py", "test_mi_pg_escapes_the_trap_with_ppo_style_updates")),
    Mutation("mi_pg-ignores-the-games-defaults", "mi_pg", "simple_spread gets the matrix games' defaults",
             'game_defaults = GAME_DEFAULTS["mpe" if game.family == "mpe" else "other"]',
             'game_defaults = GAME_DEFAULTS["other"]',
             T("test_mpe_defaults.py", "test_mi_pg_defaults_are_the_games")),
    # ------------------------------------------------------------------ ipg
    Mutation("ipg-learning-rate-1e-5", "ipg", "learning rate 1e-5: the policy barely moves from its start",
             "learning_rate: float = 1e-2", "learning_rate: float = 1e-5",
             T("test_mi_pg_ipg.py", "test_ipg_falls_into_the_payoff_0_corner_from_the_adversarial_start")),
    Mutation("ipg-policy-gradient-sign", "ipg", "the factored policy gradient's sign flipped",
             "pg_loss = -sum(", "pg_loss = sum(",
             T("test_mi_pg_ipg.py", "test_ipg_falls_into_the_payoff_0_corner_from_the_adversarial_start")),
    gae_next_value_final("ipg"),
    final_value_dropped("ipg"),
    saves("ipg", "critic"),
    # ------------------------------------------------------------------ jpg
    saves("jpg", "critic"),
    Mutation("jpg-policy-gradient-sign", "jpg", "the joint policy gradient's sign flipped",
             "pg_loss = -(b_adv * joint_log_probs.gather(", "pg_loss = (b_adv * joint_log_probs.gather(",
             T("test_mappo_mackrl_jpg.py", "test_jpg_single_joint_agent_reaches_the_optimum_from_the_trap_start")),
    Mutation("jpg-no-exploration", "jpg", "the rollout acts greedily instead of sampling pi_jt",
             "action_buf[t] = Categorical(logits=actor(state)).sample()", "action_buf[t] = actor(state).argmax(-1)",
             T("test_mappo_mackrl_jpg.py", "test_jpg_single_joint_agent_reaches_the_optimum_from_the_trap_start")),
    final_value_dropped("jpg"),
    # ------------------------------------------------------------------ mappo
    saves("mappo", "critic", bug="--save-model saves the critic instead of the actors"),
    Mutation("mappo-optimistic-surrogate", "mappo", "max instead of min in the clipped surrogate",
             "return -torch.min(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages)",
             "return -torch.max(ratio * advantages, ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages)",
             T("test_mappo_mackrl_jpg.py", "test_clipped_surrogate_equals_the_hand_computation")),
    Mutation("mappo-gae-without-discount", "mappo", "train() passes gamma = 0 to gae",
             "advantages = gae(reward_buf.unsqueeze(-1), values, last_value, args.gamma, args.gae_lambda)",
             "advantages = gae(reward_buf.unsqueeze(-1), values, last_value, 0.0, args.gae_lambda)",
             T("test_bootstrapping.py", "test_advantage_bootstraps_between_rounds[mappo]")),
    Mutation("mappo-critic-target-not-normalized", "mappo", "with --value-norm the critic regresses on raw returns",
             "returns = value_norm.normalize(returns)  # the critic's target, in its normalized units",
             "returns = returns  # the critic's target, in its normalized units",
             T("test_bootstrapping.py", "test_advantage_bootstraps_between_rounds[mappo]")),
    Mutation("mappo-time-limit-not-bootstrapped", "mappo", "a time limit treated as a real end",
             "final_value = critic_values(obs, state) if envs.ends_by_time_limit else None", "final_value = None",
             T(TIME_LIMITS, "test_policy_gradient_bootstraps_only_at_a_time_limit[time_limit-mappo]")),
    # ------------------------------------------------------------------ mackrl
    Mutation("mackrl-saves-critic-as-controllers", "mackrl", "--save-model saves the critic as the controllers",
             '"pair_controllers": controllers.state_dict()', '"pair_controllers": critic.state_dict()',
             saved_test("mackrl")),
    Mutation("mackrl-delegation-ignores-its-probability", "mackrl", "P(a1, a2) adds pi_1 pi_2 without p(delegate)",
             "controller_log_probs[:, -1:] + delegated)", "delegated)",
             T("test_mappo_mackrl_jpg.py", "test_mackrl_pair_probability_equals_the_formula")),
    Mutation("mackrl-policy-gradient-sign", "mackrl", "the policy gradient's sign flipped",
             "pg_loss = -(b_adv * log_prob).mean()", "pg_loss = (b_adv * log_prob).mean()",
             T("test_mappo_mackrl_jpg.py", "test_mackrl_pair_controller_coordinates_from_the_trap_start")),
    Mutation("mackrl-learns-nothing", "mackrl", "learning rate 1e-5: nothing is learned on the private games",
             "learning_rate: float = 1e-2", "learning_rate: float = 1e-5",
             T("test_private_games_training.py", "test_mackrl_controller_cannot_use_the_private_signals")),
    # ------------------------------------------------------------------ coma
    Mutation("coma-baseline-times-0", "coma", "the counterfactual baseline multiplied by 0",
             "squeeze(1) - counterfactual_baseline(q, lp.detach())",
             "squeeze(1) - 0 * counterfactual_baseline(q, lp.detach())",
             T("test_coma_maddpg.py", "test_coma_train_subtracts_the_counterfactual_baseline")),
    saves("coma", "DecentralizedActor(envs.obs_dim, action_sizes, args.hidden_size, args.init_prob)",
          bug="--save-model saves a freshly initialized (untrained) actor", name="an-untrained-actor"),
    Mutation("coma-td-lambda-weights-swapped", "coma", "lambda and 1 - lambda swapped in the TD(lambda) target",
             "((1 - lam) * next_q + lam * next_return)", "(lam * next_q + (1 - lam) * next_return)",
             T("test_coma_maddpg.py", "test_coma_td_lambda_targets_span_monte_carlo_to_one_step")),
    Mutation("coma-critic-sees-own-action", "coma", "the critic's input keeps agent i's own action",
             "joint_one_hot.unsqueeze(1) * self.own_action_mask,", "joint_one_hot.unsqueeze(1),",
             T("test_coma_maddpg.py", "test_coma_baseline_equals_brute_force_over_each_counterfactual_action")),
    Mutation("coma-targets-without-discount", "coma", "train() passes gamma = 0 to the TD(lambda) targets",
             "targets = td_lambda_targets(rewards, target_q, args.gamma, args.td_lambda, final_q)",
             "targets = td_lambda_targets(rewards, target_q, 0.0, args.td_lambda, final_q)",
             T("test_bootstrapping.py", "test_advantage_bootstraps_between_rounds[coma]")),
    Mutation("coma-nstep-one-step-short", "coma", "the n-step return stops one reward early",
             "        m = min(n, T - t)\n", "        m = min(n - 1, T - t)\n",
             T("test_coma_maddpg.py", "test_coma_nstep_targets")),
    Mutation("coma-nstep-ignored", "coma", "--nstep is read but TD(lambda) targets are used",
             "if args.nstep > 0:", "if args.nstep > 10**9:",
             T("test_coma_maddpg.py", "test_coma_train_uses_nstep_targets_and_standardized_rewards")),
    Mutation("coma-rewards-not-standardized", "coma", "--standardize-rewards leaves the rewards as they are",
             "rewards = (rewards - rewards.mean()) / (rewards.std() + 1e-5)", "rewards = rewards",
             T("test_coma_maddpg.py", "test_coma_train_uses_nstep_targets_and_standardized_rewards")),
    # ------------------------------------------------------------------ maddpg
    saves("maddpg", "target_actor", bug="--save-model saves the (lagging) target actor"),
    Mutation("maddpg-actor-descends-q", "maddpg", "the actor loss's sign flipped (descends Q_i)",
             "actor_loss = actor_loss - critics[i](joint).mean()", "actor_loss = actor_loss + critics[i](joint).mean()",
             # (the uniform-start control runs one seed, and seed 1 still reaches 10 with this bug; the trap test's
             # five seeds do not stay trapped: measured -5 and 10 on seeds 1 and 2)
             T("test_coma_maddpg.py", "test_trapped_in_the_payoff_0_corner_from_init_prob_0_9[maddpg]")),
    Mutation("maddpg-no-straight-through-gradient", "maddpg", "the Gumbel-softmax returns the hard sample only",
             "return hard + (soft - soft.detach())", "return hard",
             T("test_coma_maddpg.py", "test_maddpg_gumbel_softmax_is_one_hot_forward_and_differentiable_backward")),
    Mutation("maddpg-time-limit-is-terminal", "maddpg", "no bootstrap at a time limit",
             "return ((rounds + 1 < episode_length) | ends_by_time_limit).float()",
             "return (rounds + 1 < episode_length).float()",
             T(TIME_LIMITS, "test_maddpg_target_mask", "test_value_targets_bootstrap_only_at_a_time_limit[maddpg]")),
    Mutation("maddpg-others-current-ignored", "maddpg", "--others-actions current still uses the buffer's actions",
             'if args.others_actions == "current":', 'if args.others_actions == "never":',
             T("test_coma_maddpg.py", "test_maddpg_actor_loss_takes_the_other_agents_actions_from[current]")),
    Mutation("maddpg-others-current-not-detached", "maddpg",
             "--others-actions current lets agent i's loss move the other agents' actors",
             "others = [gumbel_softmax_straight_through(lg, args.gumbel_temperature).detach() for lg in logits]",
             "others = [gumbel_softmax_straight_through(lg, args.gumbel_temperature) for lg in logits]",
             T("test_coma_maddpg.py", "test_maddpg_others_current_actions_carry_no_gradient")),
    Mutation("maddpg-greedy-targets-ignored", "maddpg", "--target-actions greedy still samples",
             'if args.target_actions == "greedy"', 'if args.target_actions == "never"',
             T("test_coma_maddpg.py", "test_maddpg_target_actions[greedy]")),
    Mutation("maddpg-rewards-not-standardized", "maddpg", "--standardize-rewards leaves the rewards as they are",
             "b_rewards = (b_rewards - b_rewards.mean()) / (b_rewards.std() + 1e-5)", "b_rewards = b_rewards",
             T("test_coma_maddpg.py", "test_maddpg_standardized_rewards_reach_the_targets")),
    # ------------------------------------------------------------------ iql
    time_limit_is_terminal("iql"),
    epsilon_frozen("iql"),
    saves("iql", "target_network", "q_network"),
    one_gradient_step("iql"),
    rewards_not_standardized("iql"),
    batch_standardization_ignored("iql"),
    time_limit_terminal_ignored("iql"),
    observe_time_ignored("iql"),
    agent_id_ignored("iql"),
    agent_id_zeroed("iql"),
    recurrent_ignored("iql"),
    memory_not_carried("iql"),
    memory_kept_between_episodes("iql"),
    unrolled_from_step_one("iql"),
    # ------------------------------------------------------------------ vdn
    time_limit_is_terminal("vdn"),
    Mutation("vdn-q-tot-is-a-mean", "vdn", "Q_tot trained as the mean of the utilities, not their sum",
             "q_tot = chosen_q(current_qs, b_actions).sum(-1)",
             "q_tot = chosen_q(current_qs, b_actions).mean(-1)",
             T("test_value_factorization.py", "test_monotonic_q_tot_cannot_order_the_2x2_payoff[vdn]")),
    epsilon_frozen("vdn"),
    saves("vdn", "target_network", "q_network"),
    one_gradient_step("vdn"),
    rewards_not_standardized("vdn"),
    batch_standardization_ignored("vdn"),
    time_limit_terminal_ignored("vdn"),
    observe_time_ignored("vdn"),
    agent_id_ignored("vdn"),
    agent_id_zeroed("vdn"),
    recurrent_ignored("vdn"),
    memory_not_carried("vdn"),
    memory_kept_between_episodes("vdn"),
    unrolled_from_step_one("vdn"),
    # ------------------------------------------------------------------ qmix
    Mutation("qmix-mixer-not-monotonic", "qmix", "the absolute value dropped from the mixing weights",
             "return torch.abs(weights)", "return weights",
             T("test_value_factorization.py", "test_qmix_mixer_is_monotonic[2]")),
    Mutation("qmix-target-mixer-reads-the-current-state", "qmix", "the target mixer reads s_t instead of s_t+1",
             "target_mixer(next_q, b_states[:, 1:])", "target_mixer(next_q, b_states[:, :T])",
             T("test_bootstrapping.py", "test_the_joint_value_bootstraps_from_the_next_state[qmix]")),
    time_limit_is_terminal("qmix"),
    epsilon_frozen("qmix"),
    saves("qmix", "target_network", "q_network"),
    one_gradient_step("qmix"),
    rewards_not_standardized("qmix"),
    batch_standardization_ignored("qmix"),
    time_limit_terminal_ignored("qmix"),
    observe_time_ignored("qmix"),
    agent_id_ignored("qmix"),
    agent_id_zeroed("qmix"),
    recurrent_ignored("qmix"),
    memory_not_carried("qmix"),
    memory_kept_between_episodes("qmix"),
    unrolled_from_step_one("qmix"),
    Mutation("qmix-evaluation-keeps-the-memory", "qmix", "evaluate() never clears a recurrent policy's memory",
             "        act.start_episodes()\n", "        pass\n",
             T("test_replay_options.py", "test_evaluation_clears_the_memory_before_each_batch_of_episodes")),
    # ------------------------------------------------------------------ qtran
    Mutation("qtran-time-limit-is-terminal", "qtran", "no bootstrap from the last step at a time limit",
             "bootstrapped = T if envs.ends_by_time_limit else T - 1", "bootstrapped = T - 1",
             T(TIME_LIMITS, "test_value_targets_bootstrap_only_at_a_time_limit[qtran]")),
    Mutation("qtran-target-reads-the-current-state", "qtran", "the target Q_jt reads s_t instead of s_t+1",
             "target_q_jt(next_state[:, :bootstrapped], next_greedy)",
             "target_q_jt(b_state[:, :bootstrapped], next_greedy)",
             T("test_bootstrapping.py", "test_the_joint_value_bootstraps_from_the_next_state[qtran]")),
    Mutation("qtran-nopt-wrong-side", "qtran", "L_nopt penalizes the positive side (clamp min, not max)",
             ".clamp(max=0.0).pow(2).mean()", ".clamp(min=0.0).pow(2).mean()",
             T("test_qtran.py", "test_loss_terms_match_hand_computation")),
    Mutation("qtran-opt-moves-q-jt", "qtran", "Q_jt not detached in L_opt",
             "opt_loss = (q_sum_greedy - q_jt_greedy.detach() + v_jt)",
             "opt_loss = (q_sum_greedy - q_jt_greedy + v_jt)",
             T("test_qtran.py", "test_loss_terms_match_hand_computation")),
    epsilon_frozen("qtran", "return start_e + (end_e - start_e) * progress"),
    saves("qtran", "target_utilities", "utilities"),
    # ------------------------------------------------------------------ more agents on simple_spread (--num-agents)
    Mutation("mi_pg-exact-head-unbounded", "mi_pg", "no check on the exact head's size: 5^N outputs at any N",
             'if args.joint_head == "exact" and joint_actions > 2**16:', "if False:",
             T("test_mpe.py", "test_bad_agent_counts_name_the_flag[mi_pg-exact-head]")),
    Mutation("jpg-joint-policy-unbounded", "jpg", "no check on the joint policy's size: 5^N outputs at any N",
             "if joint_actions > 2**16:", "if False:", T("test_mpe.py", "test_bad_agent_counts_name_the_flag[jpg]")),
    *(Mutation(f"{script}-joint-argmax-unbounded", script, "the joint argmax enumerates 5^N joint actions at any N",
               "joint_evaluation = math.prod(action_sizes) <= 2**16", "joint_evaluation = True",
               T("test_mpe.py", f"test_scripts_train_with_more_agents[{script}-7]")) for script in ("vdn", "qmix")),
    # ------------------------------------------------------------------ the presets (iql, vdn, qmix, coma, maddpg)
    Mutation("iql-preset-2021-width", "iql", "the preset back at the 2021 files' 64 units",
             '"time_limit_terminal": True, "hidden_size": 128}', '"time_limit_terminal": True}',
             T("test_replay_options.py", "test_epymarl_preset_width[iql]")),
    rnn_preset("qmix-rnn-preset-at-64-units", "qmix", "--preset epymarl-rnn without the 128 units of QMIX's results",
               'EPYMARL_RNN = {**EPYMARL, "recurrent": True, "hidden_size": 128}',
               'EPYMARL_RNN = {**EPYMARL, "recurrent": True}'),
    rnn_preset("vdn-rnn-preset-feed-forward", "vdn", "--preset epymarl-rnn without the recurrent agent",
               'EPYMARL_RNN = {**EPYMARL, "recurrent": True}', "EPYMARL_RNN = {**EPYMARL}"),
    rnn_preset("iql-rnn-preset-ignored", "iql", "--preset epymarl-rnn applies --preset epymarl's values",
               "preset = {**PRESETS[args.preset],", "preset = {**EPYMARL,"),
    *(mutation for script in ("iql", "vdn", "qmix", "coma", "maddpg")
      for mutation in (preset_overrides_named_flags(script), command_line_names_nothing(script))),
]


def applies(mutation: Mutation, root: Path) -> str | None:
    """None if the mutation applies to the script under `root`; else why not (the mutation is stale)."""
    count = (root / "algos" / f"{mutation.script}.py").read_text().count(mutation.original)
    if count == 1:
        return None
    return "original text not found" if count == 0 else f"original text found {count} times"


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, str, float]:
    """(outcome, first failing test or the reason, seconds): outcome 'passed', 'failed' or 'error'."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.time()
    try:
        done = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return "error", f"timed out after {timeout:.0f} s", time.time() - start
    seconds = time.time() - start
    if done.returncode == 0:
        return "passed", "", seconds
    if done.returncode == 1:
        failed = [line.split(" ", 1)[1].split(" - ")[0] for line in done.stdout.splitlines()
                  if line.startswith("FAILED ")]
        return "failed", failed[0] if failed else "a test failed", seconds
    tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return "error", f"pytest exit {done.returncode}: {tail}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", action="append", help="only this script's mutations (repeatable)")
    parser.add_argument("--id", action="append", help="only this mutation (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--check-only", action="store_true", help="only check that every mutation still applies")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on the unmutated copy")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run (default 900)")
    args = parser.parse_args(argv)

    ids = {m.id for m in MUTATIONS}
    assert len(ids) == len(MUTATIONS), "duplicate mutation ids"
    unknown = sorted(set(args.id or []) - ids) + sorted(set(args.script or []) - {m.script for m in MUTATIONS})
    if unknown:
        parser.error(f"unknown --id or --script: {', '.join(unknown)}")
    selected = [m for m in MUTATIONS
                if (not args.script or m.script in args.script) and (not args.id or m.id in args.id)]

    if args.list:
        for m in selected:
            print(f"{m.id}  ({m.script}: {m.bug})\n    - {m.original}\n    + {m.mutated}\n"
                  f"    tests: {' '.join(m.tests)}")
        return 0

    stale = {m.id: why for m in selected if (why := applies(m, ROOT))}
    for mutation_id, why in stale.items():
        print(f"STALE  {mutation_id}: {why} in algos/{next(m.script for m in MUTATIONS if m.id == mutation_id)}.py")
    if args.check_only:  # also: every named test still exists
        union = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               *union], cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"some of the named tests do not collect:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        print(f"{len(selected) - len(stale)} of {len(selected)} mutations apply; {len(union)} named tests"
              f" {'collect' if done.returncode == 0 else 'do NOT all collect'}")
        return 1 if stale or done.returncode != 0 else 0

    results = []
    with tempfile.TemporaryDirectory(prefix="marl-refs-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        runnable = [m for m in selected if m.id not in stale]
        if not args.no_baseline and runnable:
            union = tuple(dict.fromkeys(t for m in runnable for t in m.tests))
            print(f"baseline: {len(union)} tests on the unmutated copy ...", flush=True)
            outcome, detail, seconds = run_tests(copy, union, args.timeout * 2)
            if outcome != "passed":
                print(f"baseline {outcome} ({seconds:.0f} s): {detail}\nthe tests fail without any mutation; fix that"
                      " first (every mutation would look caught)")
                return 2
            print(f"baseline passed ({seconds:.0f} s)", flush=True)
        for m in runnable:
            path = copy / "algos" / f"{m.script}.py"
            original = path.read_text()
            path.write_text(original.replace(m.original, m.mutated))
            try:
                outcome, detail, seconds = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = {"failed": "CAUGHT", "passed": "SURVIVED", "error": "ERROR"}[outcome]
            results.append((m, verdict, detail, seconds))
            print(f"{verdict:8s} {seconds:6.0f} s  {m.id}  {detail}", flush=True)

    print("\n| mutation | script | bug | result | caught by |\n|---|---|---|---|---|")
    for m, verdict, detail, _ in results:
        print(f"| {m.id} | {m.script} | {m.bug} | {verdict.lower()} | {detail if verdict == 'CAUGHT' else ''} |")
    for mutation_id in stale:
        m = next(m for m in MUTATIONS if m.id == mutation_id)
        print(f"| {m.id} | {m.script} | {m.bug} | stale | |")
    caught = sum(verdict == "CAUGHT" for _, verdict, _, _ in results)
    print(f"\n{caught} of {len(selected)} caught; {len(results) - caught} survived or errored; {len(stale)} stale")
    return 0 if caught == len(selected) else 1


if __name__ == "__main__":
    sys.exit(main())
