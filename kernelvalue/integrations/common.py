"""Engine-free plumbing the verl and TRL adapters share.

Three things neither engine gives an advantage function, and KAE needs:

* **stable prompt keys** -- the same prompt must get the same key at every step
  (:func:`check_keys` refuses keys that are missing or all equal);
* **the training step** -- and several batches of one step (verl's
  ``parameter_sync_step``, TRL's generations inside one optimiser step) must
  all be computed against the history of *earlier* steps, then written once
  (:class:`StepwiseEstimator`);
* **state that survives checkpoint/resume** (:func:`save_state`,
  :func:`load_state`).

Examples
--------
>>> import numpy as np
>>> est = StepwiseEstimator.build("kae", {"bandwidth": 0.5})
>>> a = est.compute(["p", "p"], np.array([1.0, 0.0]), step=1)   # two batches of step 1 ...
>>> b = est.compute(["q", "q"], np.array([1.0, 1.0]), step=1)
>>> _ = est.compute(["p", "p"], np.array([1.0, 1.0]), step=2)   # ... are written before step 2
>>> est.estimator.history.n_prompts
2
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..advantage import AdvantageResult, get_estimator
from ..advantage.base import as_float64, check_step

__all__ = ["KAE_FAMILY", "STATE_FILE", "StepwiseEstimator", "check_keys", "save_state", "load_state"]

# The names the adapters register in each engine: KAE and its three extensions.
KAE_FAMILY = ("kae", "kae_ll", "kae_cv", "kae_shrink")
# File holding the estimator's state inside an engine's checkpoint folder.
STATE_FILE = "kernelvalue_estimator.pt"


def check_keys(keys, n_groups: int, where: str) -> list:
    """Refuse prompt keys that cannot identify prompts across steps.

    Parameters
    ----------
    keys : sequence
        One key per response; ``None`` marks a missing one.
    n_groups : int
        Distinct prompts in the batch as the engine groups them (its per-step
        group ids); several groups sharing one key is allowed (the same prompt
        served twice), all of them sharing one key is not.
    where : str
        What to fix, for the error message (e.g. the dataset column).

    Returns
    -------
    list
        ``keys`` as a list.

    Examples
    --------
    >>> check_keys([3, 3, 4], n_groups=2, where="prompt_id")
    [3, 3, 4]
    >>> check_keys([0, 0, 0, 0], n_groups=2, where="extra_info.index")
    Traceback (most recent call last):
    ...
    ValueError: all 4 responses (2 prompts) have the same prompt key 0: ...
    """
    keys = list(keys)
    missing = sum(k is None for k in keys)
    if missing:
        raise ValueError(
            f"{missing} of {len(keys)} responses have no prompt key; KAE needs a key per prompt that stays the "
            f"same across steps. Set {where} on every dataset row."
        )
    if n_groups > 1 and len(set(keys)) == 1:
        raise ValueError(
            f"all {len(keys)} responses ({n_groups} prompts) have the same prompt key {keys[0]!r}: KAE would pool "
            f"every prompt's rewards into one history. Give each dataset row its own {where}."
        )
    return keys


class StepwiseEstimator:
    """A registry estimator fed batch by batch, written to once per training step.

    :meth:`compute` may be called several times at one step (one call per
    batch); the rewards wait until the first call at a later step, or an
    explicit :meth:`flush`, and then join the history in one ``update``. So
    every batch of step ``i`` sees exactly the history of steps ``< i``, as
    the paper's estimator does.

    Parameters
    ----------
    estimator : AdvantageEstimator
        Any registry estimator (``get_estimator(name, **options)``).

    Examples
    --------
    >>> import numpy as np
    >>> est = StepwiseEstimator.build("kae", {})
    >>> est.compute([1, 1], np.array([1.0, 0.0]), step=3).advantages
    array([ 1., -1.])
    >>> est.flush(); est.estimator.state_dict()["last_update"]
    3
    """

    def __init__(self, estimator):
        self.estimator = estimator
        self._pending: list = []
        self._pending_step = 0

    @classmethod
    def build(cls, name: str, options: Mapping | None = None) -> StepwiseEstimator:
        """``get_estimator(name, **options)`` for a name of :data:`KAE_FAMILY`, wrapped."""
        if name not in KAE_FAMILY:
            raise ValueError(f"estimator {name!r} is not one of kernelvalue's engine estimators {list(KAE_FAMILY)}.")
        return cls(get_estimator(name, **dict(options or {})))

    @property
    def name(self) -> str:
        return self.estimator.name

    def compute(self, keys, rewards, step) -> AdvantageResult:
        """Advantages for one batch of step ``step``; its rewards are written later."""
        step = check_step(step)
        if self._pending and step > self._pending_step:
            self.flush()
        result = self.estimator.compute(keys, rewards, step)
        self._pending.append((list(keys), as_float64(rewards)))
        self._pending_step = step
        return result

    def flush(self) -> None:
        """Write the pending batches (all of one step) into the estimator."""
        if not self._pending:
            return
        keys = [k for batch_keys, _ in self._pending for k in batch_keys]
        rewards = np.concatenate([z for _, z in self._pending])
        self.estimator.update(keys, rewards, self._pending_step)
        self._pending.clear()

    def state_dict(self) -> dict:
        """The estimator's state, pending rewards written first."""
        self.flush()
        return self.estimator.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; pending rewards of the current run are dropped."""
        self.estimator.load_state_dict(state)
        self._pending.clear()


def save_state(estimator: StepwiseEstimator, folder) -> str:
    """Write the estimator's state to ``folder/STATE_FILE`` (atomically) and return the path."""
    import torch

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, STATE_FILE)
    tmp = path + ".tmp"
    torch.save({"estimator": estimator.name, "state": estimator.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def load_state(estimator: StepwiseEstimator, folder) -> str:
    """Restore the state :func:`save_state` wrote in ``folder``; return the path.

    The file is unpickled (``torch.load(weights_only=False)``: it holds numpy
    arrays and prompt keys), so load only checkpoints you wrote or trust, as
    with the engines' own checkpoint files.
    """
    import torch

    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: the checkpoint in {folder} has no KAE estimator state. Resume from a checkpoint "
            "written by kernelvalue's trainer, or start a fresh run."
        )
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("estimator") != estimator.name:
        raise ValueError(
            f"{path} holds the state of estimator {saved.get('estimator')!r}, but this run uses {estimator.name!r}; "
            "resume with the estimator the checkpoint was written with."
        )
    estimator.load_state_dict(saved["state"])
    return path
