"""CartPole-v1 with adaptive LIF neurons trained by reward-modulated STDP (MSTDPET).

PySNN's gym example, ported to ``gymnasium`` and without ray-tune. The four observations (cart
position and velocity, pole angle and angular velocity), scaled to [-1, 1] and split into their
positive and negative parts, drive 8 Poisson input neurons (up to ``MAX_RATE`` Hz). They project
through a Linear connection (delay 1 step) onto two AdaptiveLIF neurons, "push left" and "push
right"; each environment step runs ``N_SIM`` network steps and the neuron that fired more chooses
the action (a tie: random). MSTDPET accumulates an eligibility trace at every network step and
turns it into a weight change once per environment step, with that step's reward; weights are
kept in [0, ``W_MAX``]. (PySNN's version had a hidden AdaptiveLIF layer; with one global reward a
hidden layer of 10 neurons did not learn in our trials, so this network has a single layer.)

The reward given to the rule: CartPole's own reward (+1 per step survived) says nothing about
which action was good, so the rule gets a shaped one: how much the step reduced
``|angle| / 0.21 + |angular velocity|`` (divided by 0.1, clipped to [-1, 1]), -1 when the pole falls, minus a
running average of past rewards (a reward-prediction baseline).

A small grid search over the learning rate and the eligibility-trace decay replaces ray-tune:
every configuration trains a fresh network (same initial weights) for a few episodes and is
scored by the mean episode length of its last training episodes. Every configuration's final
network and the untrained one are then evaluated, without learning, on the same unseen episodes
(other environment seeds); the script reports the mean episode reward of the untrained network
and of the chosen configuration's (chosen by its training score, not by the evaluation), and
whether the difference is larger than twice its standard error (paired: the per-episode
differences, since both play the same episodes).

Single training episodes vary a lot (a pole that happens to start well lasts long), so the
figure shows the training curves smoothed by a moving average, with the untrained network's
evaluation mean as a dashed line, and the evaluation reward of every grid point (mean and
standard error over the same unseen episodes) next to the untrained one.

Run: ``python examples/gym_example.py [--quick] [--out DIR] [--device cpu|cuda] [--seed N]``
"""

import itertools
import math
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from _common import make_parser, progress, require_matplotlib, save_figure, setup
from pysnn.connection import Linear
from pysnn.encoding import poisson_encoding
from pysnn.learning import MSTDPET
from pysnn.network import SNNNetwork
from pysnn.neuron import AdaptiveLIFNeuron, Input
from pysnn.plotting import weight_plot

DT = 1.0  # ms
N_SIM = 8  # network steps per environment step
MAX_RATE = 800.0  # Hz for an observation at the end of its range
OBS_SCALE = np.array([2.4, 3.0, 0.21, 3.0])  # cart x, cart velocity, pole angle, angular velocity
W_MAX = 2.0
A_PRE, A_POST = 1.0, 0.5
BASELINE_RATE = 0.05  # of the running average of the shaped reward
INPUT_NAMES = ("+x", "+v", "+angle", "+ang.vel", "-x", "-v", "-angle", "-ang.vel")
EVAL_SEED_OFFSET = 100_000  # environment seeds of the evaluation episodes, unseen in training


class CartPoleNet(SNNNetwork):
    """8 Poisson inputs → Linear(8, 2, delay 1) → 2 AdaptiveLIF neurons (left, right), batch 1."""

    def __init__(self) -> None:
        super().__init__()
        # cells_shape, dt, alpha_t, trace decay
        self.input = Input((1, 1, 8), DT, 1.0, 0.8)
        # in, out, batch, dt, delay: one step, so pre-before-post pairs are causal for MSTDPET
        self.linear = Linear(8, 2, 1, DT, 1)
        # cells_shape, thresh, v_rest, alpha_v, alpha_t, dt, duration_refrac, v decay, trace
        # decay, alpha_thresh, thresh decay; the threshold relaxes back to 1 (homeostasis)
        self.neuron = AdaptiveLIFNeuron(
            (1, 1, 2), 1.0, 0.0, 1.0, 1.0, DT, 0.0, 0.8, 0.8, 0.2, 0.9, relax_to_center=True
        )
        self.add_layer("out", self.linear, self.neuron)

    def forward(self, spikes: Tensor) -> Tuple[Tensor, Tensor]:
        """One network step: input spikes ``(1, 1, 8)`` → output spikes and trace ``(1, 1, 2)``."""
        x, trace = self.input(spikes)
        x, trace = self.linear(x, trace)
        return self.neuron(x)


def encode(observation: np.ndarray, device: torch.device) -> Tensor:
    """Observation → Poisson spikes ``(1, 1, 8, N_SIM)`` (positive parts, then negative parts)."""
    scaled = np.clip(observation / OBS_SCALE, -1.0, 1.0)
    rates = np.concatenate([np.maximum(scaled, 0.0), np.maximum(-scaled, 0.0)]) * MAX_RATE
    rates = torch.as_tensor(rates, dtype=torch.float32, device=device).view(1, 1, 8)
    return poisson_encoding(rates, N_SIM * DT, DT)


def pole_error(observation: np.ndarray) -> float:
    """How far the pole is from upright and still: ``|angle| / 0.21 + |angular velocity|``."""
    return abs(float(observation[2])) / 0.21 + abs(float(observation[3]))


def episode(
    env,
    net: CartPoleNet,
    env_seed: int,
    rule: Optional[MSTDPET] = None,
    state: Optional[Dict[str, float]] = None,
) -> float:
    """Play one episode; learn when ``rule`` is given.

    :param env: the gymnasium environment.
    :param net: the network (reset at the start of the episode).
    :param env_seed: seed of the episode.
    :param rule: ``None`` (no learning) or the MSTDPET rule.
    :param state: with a rule, ``{"baseline": float}``, the running average of the reward.
    :returns: the episode reward (number of steps survived).
    """
    device = net.linear.weight.device
    observation, _ = env.reset(seed=env_seed)
    net.reset_state()
    if rule is not None:
        rule.reset_state()
    total = 0.0
    with torch.no_grad():
        while True:
            spikes_in = encode(observation, device).to(torch.float32)
            counts = torch.zeros(2, device=device)
            for t in range(N_SIM):
                spikes, _ = net(spikes_in[..., t])
                counts += spikes.view(2)
                if rule is not None:
                    rule.update_state()
            left, right = counts.tolist()  # one host sync per environment step
            action = int(right > left) if left != right else int(np.random.randint(2))
            error = pole_error(observation)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += reward
            if rule is not None:
                shaped = (
                    -1.0
                    if terminated
                    else float(np.clip((error - pole_error(observation)) / 0.1, -1.0, 1.0))
                )
                rule.step(shaped - state["baseline"])
                state["baseline"] += BASELINE_RATE * (shaped - state["baseline"])
            if terminated or truncated:
                return total


def moving_average(values: List[float], window: int) -> np.ndarray:
    """Means of ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    return np.convolve(np.asarray(values, dtype=float), np.ones(window) / window, mode="valid")


def new_network(seed: int, device: torch.device) -> CartPoleNet:
    """A network with the weights every configuration starts from (U(0, 1), seeded).

    NumPy (ties between the actions) is seeded too: every configuration trains on the same
    random numbers, whatever ran before it.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    return CartPoleNet().to(device)


def evaluate(env, net: CartPoleNet, n_episodes: int, what: str) -> np.ndarray:
    """Episode rewards of ``n_episodes`` unseen episodes, without learning.

    Every network meets the same episodes and the same random numbers (Poisson spikes, ties).
    """
    torch.manual_seed(EVAL_SEED_OFFSET)
    np.random.seed(EVAL_SEED_OFFSET)
    seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + n_episodes)
    return np.array([episode(env, net, s) for s in progress(seeds, what, total=n_episodes)])


def train(
    env, config: Tuple[float, float], n_episodes: int, seed: int, device: torch.device
) -> Tuple[CartPoleNet, List[float]]:
    """Train a fresh network with ``config = (lr, e_trace_decay)``; returns it and its rewards."""
    lr, decay = config
    net = new_network(seed, device)
    # Built after .to(device): the rule keeps the live tensors of the layer.
    rule = MSTDPET(net.layer_state_dict(), A_PRE, A_POST, lr, decay, w_min=0.0, w_max=W_MAX)
    state = {"baseline": 0.0}
    rewards = []
    for k in progress(range(n_episodes), f"lr={lr:g} decay={decay:g}"):
        rewards.append(episode(env, net, seed * 10_000 + k, rule, state))
    return net, rewards


def main() -> int:
    """Grid search, train, evaluate and report; returns the exit status."""
    parser = make_parser(__doc__.split("\n\n")[0])
    args = setup(parser)
    try:
        import gymnasium
    except ImportError:
        print("this example needs gymnasium: pip install 'pysnn[examples]'", file=sys.stderr)
        return 2
    if args.quick:
        grid = list(itertools.product((0.002,), (0.8, 0.9)))
        n_train, n_scored, n_eval, max_steps = 6, 3, 5, 100
    else:
        # larger learning rates (0.01, 0.02) did no better than the untrained network in our
        # trials (seed 0: 29 to 59 against 50 on the evaluation episodes)
        grid = list(itertools.product((0.001, 0.002, 0.005), (0.8, 0.9)))
        n_train, n_scored, n_eval, max_steps = 60, 20, 30, 500
    env = gymnasium.make("CartPole-v1", max_episode_steps=max_steps)

    before = evaluate(env, new_network(args.seed, args.device), n_eval, "untrained")
    results = []
    for config in grid:
        net, rewards = train(env, config, n_train, args.seed, args.device)
        score = float(np.mean(rewards[-n_scored:]))
        evaluation = evaluate(env, net, n_eval, "evaluation")
        results.append((score, config, net, rewards, evaluation))
        print(
            f"lr={config[0]:g}, e_trace_decay={config[1]:g}: mean reward of the last "
            f"{n_scored} training episodes {score:.1f}, of the {n_eval} evaluation episodes "
            f"{evaluation.mean():.1f}"
        )
    score, (lr, decay), best, rewards, after = max(results, key=lambda item: item[0])
    env.close()

    # Paired: both networks play the same episodes with the same random numbers, so the noise
    # is that of the per-episode differences.
    noise = float((after - before).std(ddof=1)) / math.sqrt(len(before))
    print(
        f"chosen: lr={lr:g}, e_trace_decay={decay:g} (grid of {len(grid)}, {n_train} training "
        f"episodes each, episodes capped at {max_steps} steps)"
    )
    print(
        f"mean episode reward before learning: {before.mean():.1f} (± {before.std():.1f}, "
        f"{n_eval} evaluation episodes)"
    )
    print(
        f"mean episode reward after learning: {after.mean():.1f} (± {after.std():.1f}, "
        f"same {n_eval} episodes)"
    )
    difference = after.mean() - before.mean()
    if difference > 2 * noise:
        print(
            f"RESULT: the network learned: +{difference:.1f} reward per episode "
            f"(more than twice the standard error {noise:.1f})"
        )
    else:
        print(
            f"RESULT: no clear learning: the change {difference:+.1f} is within twice the "
            f"standard error {noise:.1f} of the difference"
        )
    print(
        f"final weights (rows: left, right; columns: {', '.join(INPUT_NAMES)}):\n"
        f"{best.linear.weight.cpu().numpy().round(2)}"
    )

    plt = require_matplotlib()
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    window = max(1, min(10, n_train // 3))
    for _, config, _, curve, _ in results:
        smooth = moving_average(curve, window)
        episodes = np.arange(window, len(curve) + 1)
        axes[0].plot(episodes, smooth, label=f"lr={config[0]:g}, γ={config[1]:g}")
    axes[0].axhline(before.mean(), color="k", linestyle="--", label="untrained (evaluation)")
    axes[0].set_xlabel("training episode")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel(f"episode reward, mean of the last {window}")
    axes[0].set_title("training (grid search), moving average")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(low, high + 0.3 * (high - low))  # room for the legend above the curves
    axes[0].legend(fontsize=7, ncol=2, loc="upper left")
    labels = ["untrained"] + [f"lr={c[0]:g}\nγ={c[1]:g}" for _, c, _, _, _ in results]
    evaluations = [before] + [evaluation for *_, evaluation in results]
    means = [e.mean() for e in evaluations]
    errors = [e.std(ddof=1) / math.sqrt(len(e)) if len(e) > 1 else 0.0 for e in evaluations]
    colors = ["0.6"] + [f"C{k}" for k in range(len(results))]
    axes[1].bar(range(len(means)), means, yerr=errors, color=colors, capsize=4)
    chosen = 1 + [c for _, c, _, _, _ in results].index((lr, decay))
    axes[1].annotate("chosen", (chosen, means[chosen] + errors[chosen]), ha="center", va="bottom")
    axes[1].set_ylim(0, 1.15 * max(m + e for m, e in zip(means, errors)))
    axes[1].set_xticks(range(len(means)), labels, fontsize=8)
    axes[1].set_ylabel("episode reward (mean ± s.e.)")
    axes[1].set_title(f"evaluation: the same {n_eval} unseen episodes, no learning")
    weight_plot(best.linear.weight, ax=axes[2], title="learnt weights (chosen)")
    axes[2].set_yticks([0, 1], ["push left", "push right"])
    axes[2].set_xticks(range(8), INPUT_NAMES, rotation=45, ha="right")
    fig.tight_layout()
    save_figure(fig, args.out, "gym_training.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
