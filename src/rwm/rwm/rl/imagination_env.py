"""rsl-rl's VecEnv inside the world model: many imagined ANYmal robots for MBPO-PPO (paper Sec. IV).

Each imagined robot starts from a history of M real steps drawn from the replay buffer (the GRU reads
it: inner autoregression), gets a velocity command from the training distribution (optionally a new
one every `command_resample_steps`), and from then on lives on RWM's predictions: the policy acts on
the predicted state, the next state and the contacts come from the model (drawn with its std scaled
by `sample_temperature`; 0: the most likely ones), the reward is the simulator's reward function
applied to the predicted transition, and an episode ends on a predicted fall, a non-finite
prediction, or after `episode_steps` (the paper's rollouts of up to 100 steps).

A predicted fall is a tilt beyond `max_tilt_gravity_z` or a knee contact the model is sure of
(probability above `knee_contact_probability`). The simulator ends an episode when the base touches
the ground, which the 45-d state cannot show (no base height). `rwm fall-tilt data/mbpo_pretrain`
measures the tilt that can stand in for it: at the last step before a fall it is 22 / 29 / 63 degrees
(10th / 50th / 90th percentile), in walking 2.0 / 6.1 / 9.6 (50th / 99th / 99.9th); a 20-degree
threshold catches 97 % of the falls and cuts 0.014 % of walking steps, the old 60 degrees 27 %.
Knee contacts come with ~90 % of the falls and never with normal walking. Thresholding their
probability matters: with sampled contacts, a few percent of knee probability in unfamiliar states
made frequent random "falls" whose penalty outweighed the tracking reward (measured: imagined
episodes shrank to 70 steps, true tracking stalled at 0.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from rwm.models.base import WorldModel, ensemble_gaussian
from rwm.robot import contract as C
from rwm.robot.frames import gravity_z_at_tilt
from rwm.robot.policy_io import OBS_DIM_WITH_LAST_ACTION, policy_observation, raw_to_targets
from rwm.sim.commands import CommandConfig
from rwm.sim.reward import RewardConfig, reward_terms, total_reward
from rwm.sim.variants import OBS_NOISE_STD
from rwm.storage.replay_buffer import ReplayBuffer


@dataclass(frozen=True)
class ImaginationConfig:
    num_envs: int = 1024
    history: int = 32
    episode_steps: int = 100
    max_tilt_gravity_z: float = -0.5
    """Projected gravity z above which the imagined robot has fallen (-cos of the tilt; -0.5: 60 deg)."""
    knee_contact_terminates: bool = True
    """A knee contact the model is sure of ends the imagined episode as a fall."""
    knee_contact_probability: float = 0.5
    """Predicted knee-contact probability above which it counts as a fall."""
    termination_penalty: float = 0.0
    """Subtracted from the reward on a predicted fall (as `EnvConfig.termination_penalty` in simulation)."""
    sample_temperature: float = 0.5
    """Scale of the predicted std when the next state is drawn (contacts are drawn from their
    probabilities); 0: the most likely prediction (mean state, contacts above 0.5), 1: the model's own
    distribution. `rwm imagine-policy models/anymal_d_ppo.onnx --world-model <MBPO's pretrained RWM>
    --data data/mbpo_pretrain --temperature T` (256 robots, 100 steps; reward per step, tracking
    term, falls; PPO expert vs standing still): T 1: -0.0066, 0.38, 171 vs +0.0013, 0.21, 1 (the
    per-step noise compounds until walking looks worse than standing); T 0.5: +0.0174, 0.70, 5 vs
    +0.0032; T 0: +0.0218, 0.80, 3 vs +0.0045. At 0 MBPO-PPO exploited the model (imagined tracking
    0.85 while 14 of 16 real episodes fell); 0.5 keeps the ranking and makes the policy cope with
    perturbed predictions."""
    command_resample_steps: int = 0
    """A new command every this many imagined steps within a rollout (0: one command per rollout).
    A switch in mid-rollout finds the robot in the policy's own gait for the old command, which is
    where the deployed policy meets command changes; a reset only switches from the gait of whoever
    collected the history. Measured (models/README.md): every 50 steps slowed MBPO-PPO and left its
    falls after command changes (7 / 100); a fall criterion imagination can show fixed them instead."""
    obs_noise: float = 0.0
    """Scale of the simulator's per-channel sensor noise (`rwm.sim.variants.OBS_NOISE_STD`, uniform) on
    the policy's observation of the imagined state; the state the model steps on stays noise-free, as
    the simulator's does. 1 with domain randomization, so that the policy meets the sensors it will
    have (`rwm train-mbpo --domain-randomization`)."""
    online_fraction: float = 0.5
    """Share of starting histories drawn from data collected online (the rest: pretraining data)."""
    start_max_tilt_deg: float = 0.0
    """Imagined robots start only from histories whose base stays within this tilt at every step (0:
    any history). Data collected with heavy action noise on randomized robots is mostly robots falling
    (`data/family_pretrain`: 1 043 falls in 1 300 trajectories); started from such histories the
    family world model ends a good policy's imagined episode 1.6 times per 100 steps, a standing one
    0.7 times (`rwm imagine-policy`), so imagination rewards little but avoiding a fall already under
    way."""
    fall_start_fraction: float = 0.0
    """Share of imagined robots (each reset draws) that start from a real history after which that
    robot fell: within `fall_start_lookahead` steps after it, it tilted past the fall tilt
    (`max_tilt_gravity_z`; `ReplayBuffer.sample_before_falls`). Imagination can teach a policy to
    avoid only the falls it shows, and drawn as any other, few histories lead into one (ten minutes of
    bags on ice: 53 falls in 30 000 rows). Such a history itself stays within the fall tilt (and
    within `start_max_tilt_deg` where that is set).
    Where the data holds none, every robot starts as any other. 0: off."""
    fall_start_lookahead: int = 25
    """Steps after a history within which its robot must have fallen to count (0.5 s at 50 Hz)."""
    uncertainty_penalty: float = 0.0
    """MOPO's lambda (RWM-U, arXiv 2504.16680): subtracted from each imagined step's reward, times the
    ensemble's disagreement on that step (std of the members' means, normalized, averaged over the
    state), so that the policy does not exploit what the model does not know. 0: off (MBPO-PPO). The
    RWM-U authors' code sums that std over the 45 dimensions and scales it by dt (0.02) like the
    reward, so a lambda here is 50/45 of theirs (their ANYmal D: 1)."""
    member_per_robot: bool = False
    """Each imagined robot steps on one ensemble member, drawn at its reset, instead of on the
    members' mean (as the RWM-U authors' code does): the policy must then do well on every member,
    so a state where one member is wrong in the policy's favour pays only on that member's robots.
    The penalty is still the members' disagreement. No effect on a single model. Adapting to an icy
    robot from its bags it did not help (43 of 50 validation episodes fell, 38 on the members' mean;
    models/README.md)."""
    seed: int = 0
    commands: CommandConfig = field(default_factory=CommandConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


class ImaginationEnv(VecEnv):
    """Batched imagined robots on a (frozen, eval-mode) world model, on the model's device: the
    rollout's tensors stay there; only the starting histories come from the (CPU) replay buffer."""

    def __init__(self, model: WorldModel, buffer: ReplayBuffer, cfg: ImaginationConfig) -> None:
        self.model, self.buffer, self.cfg = model.eval(), buffer, cfg
        self.num_envs = n = cfg.num_envs
        self.num_actions = C.ACTION_DIM
        self.max_episode_length = cfg.episode_steps
        self.device = dev = model.device
        self.gen = torch.Generator(device=dev).manual_seed(cfg.seed)
        commands = cfg.commands
        self._cmd_low = torch.tensor(
            [commands.lin_vel_x[0], commands.lin_vel_y[0], commands.yaw_rate[0]], device=dev
        )
        self._cmd_high = torch.tensor(
            [commands.lin_vel_x[1], commands.lin_vel_y[1], commands.yaw_rate[1]], device=dev
        )
        self.state = torch.zeros(n, C.STATE_DIM, device=dev)
        self.action = torch.zeros(n, C.ACTION_DIM, device=dev)
        self.command = torch.zeros(n, C.COMMAND_DIM, device=dev)
        self.air_time = torch.zeros(n, 4, device=dev)
        self.hidden = model.initial_hidden(n)
        self.params_n = torch.zeros(n, model.robot_param_dim, device=dev) if model.robot_param_dim else None
        """Each imagined robot's normalized parameters, for a model that takes them: those of the
        real robot whose history it started from."""
        if model.robot_param_dim and "robot_params" not in buffer.keys:
            raise ValueError("the world model takes the robots' parameters and the replay buffer keeps none")
        self.member = torch.zeros(n, dtype=torch.long, device=dev)
        """The ensemble member each imagined robot steps on (`member_per_robot`)."""
        self._rows = torch.arange(n, device=dev)
        self.episode_length_buf = torch.zeros(n, dtype=torch.long, device=dev)
        self._default = torch.from_numpy(C.DEFAULT_JOINT_POS).float().to(dev)
        self._obs = torch.zeros(n, OBS_DIM_WITH_LAST_ACTION, device=dev)
        self._noise_width = torch.from_numpy(OBS_NOISE_STD).float().to(dev) * cfg.obs_noise
        self.fall_starts = 0
        """Imagined robots started from a history that led into a real fall (`fall_start_fraction`)."""
        self.reward_sum = 0.0
        """Sum of the mean imagined reward per step since the last `pop_reward_mean` (for logs)."""
        self.reward_steps = 0
        self._reset(torch.arange(n, device=dev))

    # -- resets from real histories ------------------------------------------------------------
    @torch.no_grad()
    def _reset(self, ids: torch.Tensor) -> None:
        if len(ids) == 0:
            return
        m = self.cfg.history
        window = self._start_windows(len(ids))
        states, actions = window["state"].to(self.device), window["action"].to(self.device)
        norm = self.model.normalizer
        params_n = None
        if self.params_n is not None:
            params_n = norm.robot_params(window["robot_params"][:, 0].to(self.device))
            self.params_n[ids] = params_n
        _, hidden = self.model.features(
            norm.state(states[:, :-1]), norm.action(actions[:, :-1]), None, params_n
        )
        self._set_hidden(ids, hidden)
        self.state[ids] = states[:, -1]
        self.action[ids] = actions[:, -2] if m > 1 else self._default
        self._new_commands(ids)
        if self.cfg.member_per_robot:
            self.member[ids] = torch.randint(
                self.model.ensemble_size, (len(ids),), generator=self.gen, device=self.device
            )
        self.air_time[ids] = 0.0
        self.episode_length_buf[ids] = 0

    def _start_windows(self, n: int) -> dict[str, torch.Tensor]:
        """n real histories to start from: with `fall_start_fraction`, some that led into a fall."""
        cfg = self.cfg
        n_fall = 0
        if cfg.fall_start_fraction > 0.0:
            u = torch.rand(n, generator=self.gen, device=self.device)
            n_fall = int((u < cfg.fall_start_fraction).sum())
        fall = None
        if n_fall:
            upright_z = gravity_z_at_tilt(cfg.start_max_tilt_deg) if cfg.start_max_tilt_deg > 0.0 else 1.0
            upright_z = min(upright_z, cfg.max_tilt_gravity_z)  # a history of a robot already down is not one
            fall = self.buffer.sample_before_falls(
                n_fall,
                cfg.history,
                cfg.fall_start_lookahead,
                cfg.max_tilt_gravity_z,
                upright_z,
                cfg.online_fraction,
            )
        if fall is None:
            return self._any_windows(n)
        self.fall_starts += n_fall
        if n_fall == n:
            return fall
        rest = self._any_windows(n - n_fall)
        return {k: torch.cat([fall[k], rest[k]]) for k in rest}

    def _any_windows(self, n: int, attempts: int = 8) -> dict[str, torch.Tensor]:
        """n real histories to start from; with `start_max_tilt_deg`, upright ones only (rejection
        sampling, so that the buffer's mix of pretraining and online data is kept)."""
        cfg = self.cfg
        if cfg.start_max_tilt_deg <= 0.0:
            return self.buffer.sample(n, cfg.history, cfg.online_fraction)
        upright_z = gravity_z_at_tilt(cfg.start_max_tilt_deg)
        kept: list[dict[str, torch.Tensor]] = []
        found = 0
        for _ in range(attempts):
            window = self.buffer.sample(2 * n, cfg.history, cfg.online_fraction)
            upright = (window["state"][:, :, C.GRAVITY_Z] < upright_z).all(1)
            kept.append({k: v[upright] for k, v in window.items()})
            found += int(upright.sum())
            if found >= n:
                return {k: torch.cat([w[k] for w in kept])[:n] for k in window}
        raise ValueError(
            f"only {found} of {2 * n * attempts} sampled histories stay within "
            f"{cfg.start_max_tilt_deg:g} deg of upright; lower start_max_tilt_deg or add upright data"
        )

    def _new_commands(self, ids: torch.Tensor) -> None:
        u = torch.rand(len(ids), 3, generator=self.gen, device=self.device)
        self.command[ids] = self._cmd_low + u * (self._cmd_high - self._cmd_low)

    def _set_hidden(self, ids: torch.Tensor, hidden: torch.Tensor) -> None:
        if self.hidden.dim() == 3 and self.hidden.shape[1] == self.num_envs:  # GRU: (layers, B, H)
            self.hidden[:, ids] = hidden
        else:
            raise NotImplementedError("imagination needs a recurrent world model (RWM or RSSM)")

    # -- VecEnv ---------------------------------------------------------------------------------
    def _observation(self) -> torch.Tensor:
        obs = policy_observation(self.state, self.command, self.action, out=self._obs)
        if self.cfg.obs_noise > 0.0:
            noise = torch.rand(obs.shape, generator=self.gen, device=self.device)
            obs += (2.0 * noise - 1.0) * self._noise_width
        return obs

    def get_observations(self) -> TensorDict:
        return TensorDict({"policy": self._observation().clone()}, batch_size=[self.num_envs])

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        targets = raw_to_targets(actions.to(self.device))
        norm = self.model.normalizer
        means, stds, logits, self.hidden = self.model.step_members(
            norm.state(self.state), norm.action(targets), self.hidden, self.params_n
        )
        if self.cfg.member_per_robot:
            mean, std = means[self.member, self._rows], stds[self.member, self._rows]
        else:
            mean, std = ensemble_gaussian(means, stds)
        uncertainty = means.std(0, unbiased=False).mean(-1) if len(means) > 1 else mean.new_zeros(len(mean))
        p_contact = torch.sigmoid(logits)
        if self.cfg.sample_temperature > 0.0:
            noise = torch.randn(mean.shape, generator=self.gen, device=self.device)
            mean = mean + self.cfg.sample_temperature * std * noise
            contacts = (p_contact > torch.rand(logits.shape, generator=self.gen, device=self.device)).float()
        else:
            contacts = (p_contact > 0.5).float()
        nxt = norm.state_inverse(mean)
        terms, self.air_time = reward_terms(
            self.state, nxt, targets, self.action, self.command, contacts, self.air_time, self.cfg.reward
        )
        reward = total_reward(terms, self.cfg.reward) - self.cfg.uncertainty_penalty * uncertainty
        finite = torch.isfinite(nxt).all(-1)
        reward = torch.where(finite, reward, torch.zeros_like(reward))
        self.reward_sum += float(reward.mean())
        self.reward_steps += 1
        self.episode_length_buf += 1
        terminated = ~finite | (nxt[:, C.GRAVITY_Z] > self.cfg.max_tilt_gravity_z)
        if self.cfg.knee_contact_terminates:
            knee = p_contact[:, C.KNEE_CONTACTS]
            terminated |= (knee > self.cfg.knee_contact_probability).any(-1)
        if self.cfg.termination_penalty:
            reward = reward - self.cfg.termination_penalty * terminated
        truncated = (self.episode_length_buf >= self.cfg.episode_steps) & ~terminated
        self.state = torch.where(finite[:, None], nxt, self.state)
        self.action = targets
        done = terminated | truncated
        self._reset(torch.nonzero(done).flatten())
        if self.cfg.command_resample_steps > 0:
            due = (self.episode_length_buf % self.cfg.command_resample_steps == 0) & ~done
            self._new_commands(torch.nonzero(due).flatten())
        log = {f"/imagined_reward/{k}": float(v.mean()) for k, v in terms.items()}
        log["/imagined/terminations_per_step"] = float(terminated.float().mean())
        log["/imagined/uncertainty"] = float(uncertainty.mean())
        extras = {"time_outs": truncated.clone(), "log": log}
        obs = TensorDict({"policy": self._observation().clone()}, batch_size=[self.num_envs])
        return obs, reward.float(), done.long(), extras

    def pop_reward_mean(self) -> float:
        """Mean imagined reward per step since the last call (nan if no step ran)."""
        mean = self.reward_sum / self.reward_steps if self.reward_steps else float("nan")
        self.reward_sum, self.reward_steps = 0.0, 0
        return mean

    def close(self) -> None:
        pass
