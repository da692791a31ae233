"""The paper's J-step prompt schedule as a torch ``Sampler`` for engines' dataloaders.

:class:`~kernelvalue.advantage.PromptScheduler` decides which prompts each step
serves (a minibatch for ``J`` consecutive steps, reshuffled every epoch);
:class:`JStepSampler` turns that into the flat index stream a ``DataLoader``
batches, optionally repeating each prompt (TRL puts the ``G`` copies of a
prompt in the index stream) and each step's block (TRL reuses one generation
batch for several optimiser steps).

Resume is exact without storing generator state: epoch ``e`` of the stream is
a pure function of ``(seed, e)`` (the scheduler is replayed from its seed), so
an engine that only tells the sampler its epoch (``set_epoch``, as Hugging
Face's Trainer does) or restores a dataloader's state (torchdata's
``StatefulDataLoader``, as verl does, through :meth:`_EpochIterator.state_dict`)
gets the same indices as the uninterrupted run.

Examples
--------
>>> s = JStepSampler(n_prompts=4, prompts_per_step=2, J=2, seed=0)
>>> len(s), list(s)[:8]    # a minibatch twice, then the next one twice
(8, [2, 0, 2, 0, 1, 3, 1, 3])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from ..advantage import PromptScheduler
from ..advantage.base import check_positive_int

__all__ = ["JStepSampler"]


class JStepSampler(Sampler[int]):
    """Dataset indices following the J-step schedule, one epoch per ``iter()``.

    Parameters
    ----------
    n_prompts : int
        Dataset size; indices ``0 .. n_prompts - 1``.
    prompts_per_step : int
        Distinct prompts per training step (all processes together).
    J : int
        Consecutive steps each minibatch is served (the paper: 10 for MATH and
        GSM8K, 8 for DAPO).
    seed : int, default 0
        Seed of the schedule.
    mini_repeat_count : int, default 1
        Copies of each index, adjacent (TRL: ``num_generations``).
    repeat_count : int, default 1
        Copies of each step's whole block (TRL: ``num_iterations *
        steps_per_generation``, the dataloader batches one generation serves).

    Notes
    -----
    An epoch is one pass of the scheduler over the prompt set:
    ``ceil(n_prompts / prompts_per_step) * J`` steps. Successive ``iter()``
    calls continue with the next epoch; :meth:`set_epoch` jumps to one.

    Examples
    --------
    >>> s = JStepSampler(4, 2, J=1, seed=0, mini_repeat_count=2)
    >>> list(s)[:4]
    [2, 2, 0, 0]
    >>> s.set_epoch(0); list(s) == list(JStepSampler(4, 2, J=1, seed=0, mini_repeat_count=2))
    True
    """

    def __init__(self, n_prompts, prompts_per_step, J, seed=0, mini_repeat_count=1, repeat_count=1):
        self._scheduler = PromptScheduler(n_prompts, prompts_per_step, J, seed)  # validates its arguments
        self.n_prompts, self.prompts_per_step, self.J, self.seed = n_prompts, prompts_per_step, J, seed
        self.mini_repeat_count = check_positive_int("mini_repeat_count", mini_repeat_count)
        self.repeat_count = check_positive_int("repeat_count", repeat_count)
        self.epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        return self._scheduler.steps_per_epoch

    def __len__(self) -> int:
        return self.steps_per_epoch * self.prompts_per_step * self.mini_repeat_count * self.repeat_count

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` yield epoch ``epoch`` (0-based)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}.")
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        it = _EpochIterator(self, self.epoch)
        self.epoch += 1
        return it

    def epoch_steps(self, epoch: int):
        """The prompt minibatches (one int64 array per step) of epoch ``epoch``."""
        scheduler = PromptScheduler(self.n_prompts, self.prompts_per_step, self.J, self.seed)
        for _ in range(epoch * scheduler.steps_per_epoch):  # replay: cheap, one small array per step
            next(scheduler)
        return [next(scheduler) for _ in range(scheduler.steps_per_epoch)]

    def __repr__(self) -> str:
        return (
            f"JStepSampler(n_prompts={self.n_prompts}, prompts_per_step={self.prompts_per_step}, J={self.J}, "
            f"seed={self.seed}, mini_repeat_count={self.mini_repeat_count}, repeat_count={self.repeat_count})"
        )


class _EpochIterator:
    """One epoch of a :class:`JStepSampler`; its state is ``(epoch, yielded)``.

    torchdata's ``StatefulDataLoader`` saves and restores it (the ``Stateful``
    protocol: ``state_dict``/``load_state_dict``), so a resumed dataloader
    continues mid-epoch with the same indices.
    """

    def __init__(self, sampler: JStepSampler, epoch: int):
        self.sampler = sampler
        self._start(epoch, 0)

    def _start(self, epoch: int, yielded: int) -> None:
        s = self.sampler
        steps = np.stack(s.epoch_steps(epoch))  # (steps, prompts_per_step)
        block = np.repeat(steps, s.mini_repeat_count, axis=1)  # each prompt's copies adjacent
        stream = np.tile(block, (1, s.repeat_count)).reshape(-1)  # each step's block repeated
        self.epoch, self.yielded = epoch, yielded
        self._stream = stream.tolist()

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if self.yielded >= len(self._stream):
            raise StopIteration
        self.yielded += 1
        return self._stream[self.yielded - 1]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict) -> None:
        epoch, yielded = int(state["epoch"]), int(state["yielded"])
        self._start(epoch, yielded)
        self.sampler.epoch = epoch + 1
