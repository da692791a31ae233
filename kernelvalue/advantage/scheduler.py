"""The paper's prompt schedule: minibatches of prompts, each served J consecutive steps.

KAE's histories are informative only if prompts recur while the policy has
moved little. The paper splits the prompt set into minibatches and trains on
each for ``J`` consecutive steps (J = 8 or 10) before moving on; every epoch
reshuffles.

Examples
--------
>>> from kernelvalue.advantage import PromptScheduler
>>> s = PromptScheduler(n_prompts=6, prompts_per_step=3, J=2, seed=0)
>>> batches = [next(s) for _ in range(4)]
>>> bool((batches[0] == batches[1]).all()), sorted(set(batches[0].tolist()) | set(batches[2].tolist()))
(True, [0, 1, 2, 3, 4, 5])
"""

from __future__ import annotations

import numpy as np

from .base import check_positive_int

__all__ = ["PromptScheduler"]


class PromptScheduler:
    """Iterator over per-step prompt-id arrays following the paper's schedule.

    Parameters
    ----------
    n_prompts : int
        Prompts ``0 .. n_prompts-1``.
    prompts_per_step : int
        Minibatch size (<= ``n_prompts``).
    J : int
        Consecutive steps each minibatch is served.
    seed : int
        Seeds ``np.random.default_rng``; its state is part of :meth:`state_dict`.

    Notes
    -----
    Each epoch draws a fresh permutation and cuts it into
    ``ceil(n_prompts / prompts_per_step)`` minibatches. When ``prompts_per_step``
    does not divide ``n_prompts``, the last minibatch is topped up with prompts
    drawn without replacement from the rest of that epoch's permutation, so
    every step has the same size and every prompt is served at least once per
    epoch (the top-ups twice).

    Yields
    ------
    ndarray of int64, shape (prompts_per_step,)

    Examples
    --------
    >>> s = PromptScheduler(n_prompts=4, prompts_per_step=2, J=3, seed=0)
    >>> s.steps_per_epoch
    6
    >>> [next(s).tolist() for _ in range(4)]   # a minibatch for 3 steps, then the next
    [[2, 0], [2, 0], [2, 0], [1, 3]]
    """

    def __init__(self, n_prompts, prompts_per_step, J, seed=0):
        self.n_prompts = check_positive_int("n_prompts", n_prompts)
        self.prompts_per_step = check_positive_int("prompts_per_step", prompts_per_step)
        self.J = check_positive_int("J", J)
        if self.prompts_per_step > self.n_prompts:
            raise ValueError(
                f"prompts_per_step={prompts_per_step} exceeds n_prompts={n_prompts}; use at most n_prompts."
            )
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._batches = None  # current epoch's minibatches, (n_batches, prompts_per_step)
        self._batch = 0
        self._repeat = 0
        self.epoch = 0
        self.step = 0

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.n_prompts // self.prompts_per_step)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_epoch * self.J

    def _new_epoch(self):
        perm = self._rng.permutation(self.n_prompts)
        b, k = self.batches_per_epoch, self.prompts_per_step
        short = b * k - self.n_prompts
        if short:
            rest = perm[: self.n_prompts - (k - short)]
            fill = self._rng.choice(rest, size=short, replace=False)
            perm = np.concatenate([perm, fill])
        self._batches = perm.reshape(b, k).astype(np.int64)
        self._batch = 0
        self._repeat = 0

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        if self._batches is None:
            self._new_epoch()
        elif self._repeat == self.J:
            self._repeat = 0
            self._batch += 1
            if self._batch == self._batches.shape[0]:
                self.epoch += 1
                self._new_epoch()
        self._repeat += 1
        self.step += 1
        return self._batches[self._batch].copy()

    def state_dict(self) -> dict:
        """Exact resume state (the generator's bit state included)."""
        return {
            "n_prompts": self.n_prompts,
            "prompts_per_step": self.prompts_per_step,
            "J": self.J,
            "seed": self.seed,
            "rng": self._rng.bit_generator.state,
            "batches": None if self._batches is None else self._batches.copy(),
            "batch": self._batch,
            "repeat": self._repeat,
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        shape = (state["n_prompts"], state["prompts_per_step"], state["J"])
        if shape != (self.n_prompts, self.prompts_per_step, self.J):
            raise ValueError(
                f"scheduler state is for (n_prompts, prompts_per_step, J)={shape}, this scheduler has "
                f"{(self.n_prompts, self.prompts_per_step, self.J)}; build it with the saved ones."
            )
        self.seed = state["seed"]
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]
        self._batches = None if state["batches"] is None else np.array(state["batches"], dtype=np.int64)
        self._batch, self._repeat = int(state["batch"]), int(state["repeat"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])

    def __repr__(self) -> str:
        return (
            f"PromptScheduler(n_prompts={self.n_prompts}, prompts_per_step={self.prompts_per_step}, "
            f"J={self.J}, seed={self.seed})"
        )
