"""The advantage-estimator protocol, the registry and the shared batch plumbing.

Every estimator answers one question per training step: given the rewards of a
batch of responses, each tagged with its prompt key, what baseline (value
estimate) does each response get, and so what advantage ``Z - baseline``?
Responses sharing a key form that prompt's group; group sizes may differ.

The protocol (verl's ``core_algos`` style: one small class per estimator, one
shared signature, a registry by name)::

    est = get_estimator("kae", bandwidth=0.2)
    res = est.compute(keys, rewards, step)      # AdvantageResult(advantages, baselines)
    est.update(keys, rewards, step)             # the step's rewards join the state
    state = est.state_dict(); est.load_state_dict(state)

``compute`` does not change what an estimator has learned (it can be called
again, e.g. for diagnostics; it only records the step, so that a step going
backwards is caught); ``update`` is where history is written. Outputs follow the
rewards' namespace (numpy or torch), device and floating dtype; the arithmetic
runs in numpy float64 in between, which is exact enough for the 1e-12 checks and
cheap at the batch sizes of RL training (10^3-10^4 responses).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator
>>> est = get_estimator("rloo")
>>> res = est.compute(["a", "a", "b", "b"], np.array([1.0, 0.0, 1.0, 1.0]), step=1)
>>> res.baselines
array([0., 1., 1., 1.])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._array import array_namespace, float_dtype, is_numpy_array, like, to_numpy

__all__ = [
    "AdvantageResult",
    "AdvantageEstimator",
    "StatefulEstimator",
    "Batch",
    "ESTIMATORS",
    "register_estimator",
    "get_estimator",
    "estimator_params",
    "group_ids",
    "key_rows",
    "rows_to_evict",
    "drop_rows",
    "grown_rows",
    "prepare_batch",
    "REWARD_LIMIT",
    "StateReader",
]

# Largest |reward| a stateful estimator accepts: 2**128 (~3.4e38, the float32
# range). Their state sums rewards and squared rewards over an unbounded number
# of steps; below this bound a sum of squares stays finite for up to 2**768
# rewards, so no state can overflow.
REWARD_LIMIT = 2.0**128

_ABSENT = object()


@dataclass
class AdvantageResult:
    """Per-response advantages and the baselines they were computed from.

    Attributes
    ----------
    advantages : array, shape (n,)
        ``Z - baseline`` (possibly rescaled, e.g. by GRPO's group std).
    baselines : array, shape (n,)
        The value estimate each response was compared with.

    Examples
    --------
    >>> import numpy as np
    >>> res = get_estimator("drgrpo").compute([0, 0], np.array([1.0, 0.0]), step=1)
    >>> res.advantages, res.baselines
    (array([ 0.5, -0.5]), array([0.5, 0.5]))
    """

    advantages: Any
    baselines: Any


def as_float64(x) -> np.ndarray:
    """Any numpy/torch/Array-API array (or sequence) as a float64 numpy array.

    torch tensors are cast on their device first: numpy has no bfloat16.

    Examples
    --------
    >>> as_float64([1, 0])
    array([1., 0.])
    """
    if not is_numpy_array(x) and hasattr(x, "detach") and hasattr(x, "double"):
        return x.detach().double().cpu().numpy()
    return np.asarray(to_numpy(x) if hasattr(x, "shape") else x, dtype=np.float64)


# --------------------------------------------------------------------------- grouping
def group_ids(keys):
    """Map prompt keys to dense group ids.

    Parameters
    ----------
    keys : sequence or array of hashables, shape (n,)
        ints, strs, tuples or any other hashables; numpy/torch arrays.

    Returns
    -------
    uniq : list
        The distinct keys as Python objects (``int``, ``str``, ...), group ``k``
        is ``uniq[k]``.
    inverse : ndarray of int64, shape (n,)
        Group id of every response.

    Notes
    -----
    Keys of one scalar type go through ``np.unique(return_inverse=True)``
    (sorted groups, vectorised). Keys numpy cannot hold as a 1-D array of one
    scalar type -- a list mixing types (``[1, "1"]``: ``np.asarray`` would turn
    ``1`` into ``"1"``), tuples (``np.asarray`` would make a 2-D array), other
    objects -- fall back to a dict in first-seen order (a Python pass over the
    keys, only in that case).

    Examples
    --------
    >>> group_ids(["b", "a", "b"])
    (['a', 'b'], array([1, 0, 1]))
    >>> group_ids([("gsm8k", 3), ("math", 3), ("gsm8k", 3)])
    ([('gsm8k', 3), ('math', 3)], array([0, 1, 0]))
    """
    if not is_numpy_array(keys) and hasattr(keys, "detach"):
        keys = to_numpy(keys)
    if not is_numpy_array(keys):
        keys = list(keys)
        kinds = set(map(type, keys))
        ints = all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in kinds)
        arr = None
        if len(kinds) <= 1 or ints:
            try:
                arr = np.asarray(keys)
            except ValueError:  # ragged sequences
                arr = None
        if arr is None or arr.ndim != 1 or arr.dtype == object:
            return _first_seen(keys)
        keys = arr
    if keys.ndim != 1:
        keys = keys.reshape(-1)
    if keys.dtype == object:
        return _first_seen(keys)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq.tolist(), inverse.astype(np.int64, copy=False).reshape(-1)


def _first_seen(keys):
    codes: dict = {}
    try:
        inverse = np.fromiter((codes.setdefault(k, len(codes)) for k in keys), dtype=np.int64, count=len(keys))
    except TypeError:
        pos = next(i for i, k in enumerate(keys) if not _hashable(k))
        raise TypeError(
            f"keys[{pos}] is {keys[pos]!r} ({type(keys[pos]).__name__}), which is not hashable; keys must be one "
            "hashable prompt id per response (int, str, tuple, ...): use a tuple instead of a list, or the prompt's id."
        ) from None
    return list(codes), inverse


def _hashable(key) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def key_rows(index: dict, order: list, keys, create=False) -> np.ndarray:
    """Row of each key in a ``key -> row`` table (``-1`` where unknown).

    With ``create``, unknown keys get the next free rows: they are added to
    ``index`` and appended to ``order`` (the keys by row). Called with a
    batch's *distinct* prompts, so the Python pass is per prompt, not per
    response.

    Examples
    --------
    >>> index, order = {}, []
    >>> key_rows(index, order, ["a", "b"], create=True), key_rows(index, order, ["b", "c"])
    (array([0, 1]), array([ 1, -1]))
    """
    if not create:
        return np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    out = np.empty(len(keys), dtype=np.int64)
    for pos, k in enumerate(keys):
        row = index.get(k)
        if row is None:
            row = index[k] = len(order)
            order.append(k)
        out[pos] = row
    return out


def rows_to_evict(index: dict, order: list, keys, last, max_prompts: int) -> np.ndarray:
    """Rows to forget so that ``keys`` (one step's distinct prompts) fit in a
    table of at most ``max_prompts`` keys: the least recently updated first
    (smallest ``last``, ties by row), never one of ``keys``.

    Raises a ValueError when ``keys`` alone exceed ``max_prompts``.

    Examples
    --------
    >>> index, order = {"a": 0, "b": 1, "c": 2}, ["a", "b", "c"]
    >>> rows_to_evict(index, order, ["a", "d"], last=np.array([1, 5, 3]), max_prompts=3)
    array([2])
    """
    if len(keys) > max_prompts:
        raise ValueError(
            f"one step has {len(keys)} distinct prompts but max_prompts={max_prompts}; build the estimator with "
            "max_prompts at least the number of prompts per step (or max_prompts=None for no bound)."
        )
    rows = key_rows(index, order, keys)
    excess = len(order) + int(np.sum(rows < 0)) - max_prompts
    if excess <= 0:
        return np.zeros(0, dtype=np.int64)
    last = np.array(last, dtype=np.int64)
    last[rows[rows >= 0]] = np.iinfo(np.int64).max
    return np.argsort(last, kind="stable")[:excess]


def drop_rows(index: dict, order: list, arrays: list, drop) -> list:
    """Forget the keys in rows ``drop`` of a ``key -> row`` table (see :func:`key_rows`).

    The last kept rows move into the holes (``O(len(drop))`` Python work; row
    order is not preserved), vacated rows are zeroed (new keys expect zero
    rows), and when at most a quarter of the allocated rows stays in use the
    arrays are copied down to twice that, so memory follows the table's size.
    Returns the arrays (the same objects unless shrunk).

    Examples
    --------
    >>> index, order = {"a": 0, "b": 1, "c": 2}, ["a", "b", "c"]
    >>> (x,) = drop_rows(index, order, [np.array([1.0, 2.0, 3.0])], [0])
    >>> order, index, x
    (['c', 'b'], {'b': 1, 'c': 0}, array([3., 2., 0.]))
    """
    drop = np.unique(np.asarray(drop, dtype=np.int64))
    if drop.size == 0:
        return arrays
    p = len(order)
    keep = p - drop.size
    for r in drop.tolist():
        del index[order[r]]
    holes = drop[drop < keep]
    movers = np.setdiff1d(np.arange(keep, p), drop, assume_unique=True)
    for arr in arrays:
        arr[holes] = arr[movers]
        arr[keep:p] = 0
    for h, m in zip(holes.tolist(), movers.tolist()):
        order[h] = order[m]
        index[order[h]] = h
    del order[keep:]
    alloc = arrays[0].shape[0]
    if alloc > 8 and alloc > 4 * keep:
        arrays = [a[: max(8, 2 * keep)].copy() for a in arrays]
    return arrays


def grown_rows(current: int, needed: int, max_rows) -> int:
    """Rows to allocate for ``needed`` keys: doubling, but never past ``max_rows`` (None: unbounded)."""
    rows = max(needed, 2 * current)
    return rows if max_rows is None else min(rows, max(needed, max_rows))


@dataclass
class Batch:
    """One step's validated batch, in numpy float64, with its group structure.

    Attributes
    ----------
    z : ndarray (n,)        rewards, times ``2**-exp``
    inverse : ndarray (n,)  group id of every response
    uniq : list             distinct keys (group ``k`` is ``uniq[k]``)
    counts : ndarray (p,)   group sizes ``G_k`` (float64)
    sums : ndarray (p,)     group sums of ``z``
    step : int              the paper's ``i``
    ref : array             the caller's rewards (outputs follow its namespace/device/dtype)
    exp : int               power of two the rewards were divided by (0 unless rescaled,
                            see :func:`prepare_batch`); :meth:`unscale` undoes it
    """

    z: np.ndarray
    inverse: np.ndarray
    uniq: list
    counts: np.ndarray
    sums: np.ndarray
    step: int
    ref: Any
    exp: int = 0

    @property
    def n_groups(self) -> int:
        return len(self.uniq)

    def group_sum(self, values):
        """Per-group sums of a per-response array."""
        return np.bincount(self.inverse, weights=values, minlength=self.n_groups)

    def unscale(self, values):
        """Values in the units of ``z`` back in the caller's reward units (exact: a power of two).

        A value too large for float64 becomes inf here, quietly: :meth:`result` refuses it.
        """
        if not self.exp:
            return values
        with np.errstate(over="ignore"):
            return np.ldexp(values, self.exp)

    def result(self, advantages, baselines, estimator="estimator") -> AdvantageResult:
        """Wrap numpy results on the caller's namespace, device and dtype.

        Raises a ValueError, rather than returning inf or NaN, when a value
        does not fit the output dtype (e.g. ``Z - baseline`` for rewards of
        opposite sign near the float limit, or float32 rewards near 3.4e38).
        """
        xp = array_namespace(self.ref)
        dtype = float_dtype(self.ref, xp)
        top = float(xp.finfo(dtype).max)
        for what, values in (("advantages", advantages), ("baselines", baselines)):
            big = float(np.max(np.abs(values)))
            if not big <= top:  # also catches NaN
                z = self.unscale(self.z)
                raise ValueError(
                    f"estimator {estimator!r}: the {what} exceed the {dtype} range (|value| up to {top:.3g}) for "
                    f"rewards in [{float(z.min()):.3g}, {float(z.max()):.3g}]. Rescale the rewards (e.g. divide "
                    "them by a constant)" + ("" if dtype == xp.float64 else " or pass float64 rewards") + "."
                )
        return AdvantageResult(like(advantages, self.ref), like(baselines, self.ref))


def check_step(step) -> int:
    """``step`` as a Python int >= 1, else a ValueError/TypeError that says so.

    Examples
    --------
    >>> check_step(3.0)
    3
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        if isinstance(step, (float, np.floating)) and float(step).is_integer():
            step = int(step)
        else:
            raise TypeError(f"step must be an integer >= 1 (the training step i), got {step!r}.")
    step = int(step)
    if step < 1:
        raise ValueError(f"step must be >= 1 (the paper's 1-based training step i), got {step}.")
    return step


def prepare_batch(keys, rewards, step, *, rescale=False, limit=None) -> Batch:
    """Validate one step's inputs and compute the group structure.

    Parameters
    ----------
    keys, rewards, step
        As in :meth:`AdvantageEstimator.compute`.
    rescale : bool, default False
        Divide the rewards by a power of two (``Batch.exp``) when their largest
        magnitude lies outside ``[2**-128, 2**128]``, so that group sums and
        squared deviations neither overflow nor underflow. Exact (powers of two
        commute with rounding, short of subnormals) and a no-op on ordinary
        rewards; the estimator must work in the batch's units and
        :meth:`Batch.unscale` what it returns in reward units.
    limit : float, optional
        Largest ``|reward|`` accepted (stateful estimators: :data:`REWARD_LIMIT`).

    Raises
    ------
    ValueError
        Empty batch, ``keys``/``rewards`` lengths differ, non-finite rewards,
        rewards beyond ``limit``, or ``step < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> b = prepare_batch(["x", "y", "x"], np.array([1.0, 0.0, 0.0]), step=2)
    >>> b.uniq, b.inverse, b.counts, b.sums
    (['x', 'y'], array([0, 1, 0]), array([2., 1.]), array([1., 0.]))
    """
    step = check_step(step)
    ref = rewards
    if not hasattr(rewards, "shape"):
        ref = np.asarray(rewards, dtype=np.float64)
    z = as_float64(ref)
    if z.ndim != 1:
        if z.ndim == 2 and z.shape[1] == 1:
            z = z[:, 0]
        else:
            raise ValueError(f"rewards must be 1-D (one scalar per response), got shape {tuple(z.shape)}.")
    if keys is None or isinstance(keys, (str, bytes)) or not (hasattr(keys, "shape") or hasattr(keys, "__len__")):
        raise TypeError(
            f"keys must be a sequence or array with one prompt key per response, got {type(keys).__name__}; "
            "e.g. keys=[prompt_id] * G for one prompt's group."
        )
    n_keys = len(keys) if not hasattr(keys, "shape") else int(np.prod(keys.shape))
    if n_keys != z.shape[0]:
        raise ValueError(
            f"keys has {n_keys} entries but rewards has {z.shape[0]}; pass one prompt key per response."
        )
    if z.shape[0] == 0:
        raise ValueError("empty batch: keys and rewards hold no responses; pass at least one response.")
    if not np.all(np.isfinite(z)):
        bad = int(np.sum(~np.isfinite(z)))
        raise ValueError(
            f"rewards contains {bad} non-finite value(s) (NaN or inf); score every response with a finite "
            "number (e.g. 0.0 for an unparsable answer) before computing advantages."
        )
    big = float(np.max(np.abs(z)))
    if limit is not None and big > limit:
        raise ValueError(
            f"rewards reach {big:.3g} in magnitude; this estimator keeps sums of rewards and squared rewards across "
            f"steps and accepts |reward| <= {limit:.3g} (2**128, the float32 range). Rescale the rewards (e.g. divide "
            "them by a constant); nothing was recorded."
        )
    if hasattr(ref, "dtype") and is_numpy_array(ref) and not np.issubdtype(ref.dtype, np.floating):
        ref = z
    exp = 0
    if rescale and big > 0 and not _UNIT_LO <= big <= _UNIT_HI:
        exp = int(np.frexp(big)[1])
        z = np.ldexp(z, -exp)
    uniq, inverse = group_ids(keys)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    sums = np.bincount(inverse, weights=z, minlength=len(uniq))
    return Batch(z, inverse, uniq, counts, sums, step, ref, exp)


# Rewards whose largest magnitude lies in this range are used as they are: sums
# of up to 2**700 of them and their squared deviations stay normal floats.
_UNIT_LO, _UNIT_HI = 2.0**-128, 2.0**128


# --------------------------------------------------------------------------- protocol
class AdvantageEstimator:
    """Base class: stateless estimators override :meth:`_compute` only.

    Subclasses receive a validated :class:`Batch` (numpy float64) and return
    ``(advantages, baselines)`` as numpy arrays; :meth:`compute` moves them to the
    caller's namespace. ``values`` (true values, one per response) reaches
    ``_compute`` only for estimators that set ``needs_values = True``.

    Examples
    --------
    >>> import numpy as np
    >>> class Half(AdvantageEstimator):
    ...     def _compute(self, batch):
    ...         return batch.z - 0.5, np.full_like(batch.z, 0.5)
    >>> Half().compute(["a", "b"], np.array([1.0, 0.0]), step=1).advantages
    array([ 0.5, -0.5])
    """

    name = "base"
    needs_values = False
    stateful = False
    # Whether ``_compute`` works in the batch's rescaled units (``Batch.exp``, see
    # prepare_batch) and unscales its results; custom estimators see raw rewards.
    rescales = False
    # Largest |reward| accepted (None: any finite reward).
    reward_limit = None

    def compute(self, keys, rewards, step, values=None) -> AdvantageResult:
        """Advantages and baselines for one step's batch.

        Parameters
        ----------
        keys : sequence of hashables, shape (n,)
            Prompt key of every response; equal keys form a group.
        rewards : array, shape (n,)
            numpy or torch (any device); outputs follow it.
        step : int
            The 1-based training step ``i``.
        values : array, shape (n,), optional
            True value of each response's prompt; only ``"oracle"`` uses it.

        Returns
        -------
        AdvantageResult
        """
        batch = self._batch(keys, rewards, step)
        self._check_compute_step(batch.step)
        # An overflow becomes inf quietly here and result() refuses it with a clear error.
        with np.errstate(over="ignore"):
            if self.needs_values:
                adv, base = self._compute(batch, self._values(values, batch))
            else:
                adv, base = self._compute(batch)
        res = batch.result(adv, base, self.name)
        self._computed(batch.step)
        return res

    def update(self, keys, rewards, step) -> None:
        """Record the step's rewards (no-op for stateless estimators)."""
        batch = self._batch(keys, rewards, step)
        self._check_update_step(batch.step)
        self._update(batch)

    def _batch(self, keys, rewards, step) -> Batch:
        return prepare_batch(keys, rewards, step, rescale=self.rescales, limit=self.reward_limit)

    # hooks -------------------------------------------------------------------
    def _compute(self, batch: Batch, *args):  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, batch: Batch) -> None:
        pass

    def _check_compute_step(self, step: int) -> None:
        pass

    def _computed(self, step: int) -> None:
        """Called after a successful compute (a failed one records nothing)."""

    def _check_update_step(self, step: int) -> None:
        pass

    def _values(self, values, batch: Batch):
        if values is None:
            raise ValueError(
                f"estimator {self.name!r} needs values=... (the true value of every response's prompt, "
                "e.g. a Monte-Carlo estimate); pass values with one entry per response."
            )
        v = as_float64(values).reshape(-1)
        if v.shape[0] != batch.z.shape[0]:
            raise ValueError(f"values has {v.shape[0]} entries but rewards has {batch.z.shape[0]}; pass one per response.")
        if not np.all(np.isfinite(v)):
            raise ValueError("values contains NaN or inf; pass finite true values.")
        return v

    # state -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Picklable state (plain Python and numpy objects): the estimator's name and options."""
        return {"estimator": self.name, "params": dict(getattr(self, "_params", {}))}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, all or nothing.

        The whole state is checked first (it belongs to this estimator and
        options, every field is present with the right type, shape and range,
        no NaN or inf) and only then applied: a failed load raises a
        ValueError that names the field and changes nothing.
        """
        staged = self._read_state(StateReader(state, "state_dict"))
        self.__dict__.update(staged)

    def _read_state(self, reader: StateReader) -> dict:
        """Validate ``reader``'s state; return the attributes to set (touch nothing).

        Subclasses extend it (``staged = super()._read_state(reader)``, then
        their own fields) so that :meth:`load_state_dict` stays all or nothing.
        """
        got = reader.get("estimator")
        if got != self.name:
            raise ValueError(f"state_dict is for estimator {got!r}, not {self.name!r}; load it into get_estimator({got!r}).")
        params = getattr(self, "_params", {})
        saved = reader.get("params")
        if saved != params:
            if not isinstance(saved, Mapping):
                raise ValueError(f"state_dict['params'] must be a dict of options, got {type(saved).__name__}.")
            diff = ", ".join(
                f"{k}: saved {saved.get(k, '(absent)')!r}, here {params.get(k, '(absent)')!r}"
                for k in sorted(set(saved) | set(params), key=str)
                if saved.get(k, _ABSENT) != params.get(k, _ABSENT)
            )
            raise ValueError(f"state_dict was saved with other options ({diff}); build the estimator with the same options.")
        return {}

    def __repr__(self) -> str:
        params = getattr(self, "_params", {})
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"


class StatefulEstimator(AdvantageEstimator):
    """Base for estimators with memory across steps.

    Steps may not go backwards: ``compute(step)`` needs ``step`` strictly after
    the last :meth:`update` (the history holds only past steps ``I_j < i``) and
    not before the last ``compute``; ``update(step)`` needs ``step`` at or after
    both. Also keeps the global running mean of every reward seen, the
    documented fallback baseline where an estimator has nothing else.

    Rewards must satisfy ``|Z| <= REWARD_LIMIT`` (2**128, the float32 range):
    the state sums rewards and their squares over an unbounded number of steps,
    and within this bound no sum can overflow. Larger rewards raise a
    ValueError before anything is recorded.

    Subclasses add state by extending :meth:`state_dict` and
    :meth:`_read_state` (validate, return the attributes to set), never
    :meth:`load_state_dict`, which applies the validated state all at once.

    Examples
    --------
    >>> import numpy as np
    >>> est = get_estimator("ema")
    >>> est.update([0, 1], np.array([1.0, 0.0]), step=1)
    >>> est.global_mean
    0.5
    >>> est.compute([0], np.array([1.0]), step=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: step=1 is not after the last update (step 1): ... increase step every training step.
    """

    stateful = True
    reward_limit = REWARD_LIMIT

    def __init__(self):
        self._last_update = 0
        self._last_seen = 0
        self._total = 0.0
        self._count = 0

    @property
    def global_mean(self) -> float:
        """Mean of every reward passed to :meth:`update` so far (0 before any)."""
        return self._total / self._count if self._count else 0.0

    def _check_compute_step(self, step: int) -> None:
        if step <= self._last_update:
            raise ValueError(
                f"step={step} is not after the last update (step {self._last_update}): the history must hold "
                "only past steps. Call compute(step) before update(step) and increase step every training step."
            )
        if step < self._last_seen:
            raise ValueError(f"step={step} goes backwards (last step seen: {self._last_seen}); steps must not decrease.")

    def _computed(self, step: int) -> None:
        self._last_seen = step

    def _check_update_step(self, step: int) -> None:
        if step < max(self._last_update, self._last_seen):
            raise ValueError(
                f"step={step} goes backwards (last step seen: {max(self._last_update, self._last_seen)}); "
                "steps must not decrease."
            )

    def update(self, keys, rewards, step) -> None:
        batch = self._batch(keys, rewards, step)
        self._check_update_step(batch.step)
        self._update(batch)
        self._total += float(batch.z.sum())
        self._count += int(batch.z.shape[0])
        self._last_update = self._last_seen = batch.step

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(last_update=self._last_update, last_seen=self._last_seen, total=self._total, count=self._count)
        return state

    def _read_state(self, reader: StateReader) -> dict:
        staged = super()._read_state(reader)
        last_update = reader.int("last_update", lo=0)
        count = reader.int("count", lo=0)
        total = reader.float("total")
        if abs(total) > REWARD_LIMIT * max(count, 1):
            raise ValueError(f"state_dict['total']={total!r} exceeds count * REWARD_LIMIT; the state is corrupt.")
        staged.update(
            _last_update=last_update,
            _last_seen=reader.int("last_seen", lo=last_update),
            _total=total,
            _count=count,
        )
        return staged


# --------------------------------------------------------------------------- registry
ESTIMATORS: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_").replace(" ", "_")


def register_estimator(name: str, *aliases: str):
    """Class decorator adding an estimator to :data:`ESTIMATORS` under ``name``.

    Examples
    --------
    >>> @register_estimator("zero_demo")
    ... class Zero(AdvantageEstimator):
    ...     def _compute(self, batch):
    ...         return batch.z, 0 * batch.z
    >>> "zero_demo" in ESTIMATORS
    True
    >>> del ESTIMATORS["zero_demo"]
    """

    def deco(cls):
        key = _norm(name)
        if key in ESTIMATORS and ESTIMATORS[key] is not cls:
            raise ValueError(f"estimator name {name!r} is already registered to {ESTIMATORS[key].__name__}.")
        ESTIMATORS[key] = cls
        cls.name = key
        for alias in aliases:
            _ALIASES[_norm(alias)] = key
        return cls

    return deco


def _resolve(name: str) -> type:
    if not isinstance(name, str):
        raise TypeError(f"estimator name must be a string, got {type(name).__name__}.")
    key = _norm(name)
    key = _ALIASES.get(key, key)
    if key not in ESTIMATORS:
        raise ValueError(
            f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)} (aliases: {sorted(_ALIASES)})."
        )
    return ESTIMATORS[key]


def estimator_params(name: str) -> list[str]:
    """Keyword arguments ``get_estimator(name, ...)`` accepts.

    Examples
    --------
    >>> estimator_params("grpo")
    ['eps']
    """
    cls = _resolve(name)
    sig = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]


def get_estimator(name: str, **kwargs) -> AdvantageEstimator:
    """A fresh estimator from the registry.

    Parameters
    ----------
    name : str
        A registered name or alias (case-insensitive; ``-`` and ``_`` are the same).
    **kwargs
        The estimator's options (see its class docstring).

    Raises
    ------
    ValueError
        Unknown name (the message lists the names) or a bad option value.
    TypeError
        An option the estimator does not take (the message names it and lists
        the accepted ones).

    Examples
    --------
    >>> est = get_estimator("kae", bandwidth=0.1, kernel="triangular")
    >>> est.bandwidth
    0.1
    """
    cls = _resolve(name)
    accepted = estimator_params(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"estimator {cls.name!r} does not take option(s) {unknown}; it accepts {accepted or 'no options'}."
        )
    return cls(**kwargs)


def check_number(name: str, value) -> float:
    """A real number option as a float; ``bool``, strings and arrays are refused
    with a TypeError naming the option (``float(True)`` and ``float("0.2")``
    would silently pass).

    Examples
    --------
    >>> check_number("eps", 1)
    1.0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    return float(value)


def check_bool(name: str, value) -> bool:
    """A ``True``/``False`` option, else a TypeError naming it (``bool("no")`` is True).

    Examples
    --------
    >>> check_bool("scale_std", False)
    False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_choice(name: str, value, choices) -> str:
    """One of a few string options, else an error naming it and the choices.

    Examples
    --------
    >>> check_choice("window", "absolute", ("relative", "absolute"))
    'absolute'
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)}, got {value!r} ({type(value).__name__}).")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_optional_positive_int(name: str, value):
    """``None`` (no bound) or a positive integer, else a ValueError naming it."""
    return None if value is None else check_positive_int(f"{name} (or None for no bound)", value)


def check_positive(name: str, value) -> float:
    """A finite positive float option, else an error naming it.

    Examples
    --------
    >>> check_positive("bandwidth", 0.2)
    0.2
    """
    v = check_number(name, value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}; pass a positive value.")
    return v


def check_positive_int(name: str, value) -> int:
    """A positive integer option (``bool`` refused), else a ValueError naming it.

    Examples
    --------
    >>> check_positive_int("J", 8)
    8
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_unit(name: str, value, *, open_low=False, open_high=False) -> float:
    """A float option in [0, 1] (ends optionally open), else an error naming it.

    Examples
    --------
    >>> check_unit("decay", 0.9, open_high=True)
    0.9
    """
    v = check_number(name, value)
    lo_ok = v > 0 if open_low else v >= 0
    hi_ok = v < 1 if open_high else v <= 1
    if not (math.isfinite(v) and lo_ok and hi_ok):
        lo, hi = "(0" if open_low else "[0", "1)" if open_high else "1]"
        raise ValueError(f"{name} must lie in {lo}, {hi}, got {value!r}.")
    return v


def check_eps(name: str, value) -> float:
    """A finite ``eps >= 0`` option (a stabiliser added to a divisor), else an error naming it."""
    v = check_number(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")
    return v


# --------------------------------------------------------------------------- state reading
class StateReader:
    """Field-by-field reader of a saved state: every accessor validates and
    raises a ValueError naming the field; nothing is changed, so a loader can
    read everything first and apply it only when all of it is valid.

    Examples
    --------
    >>> r = StateReader({"count": 3, "x": [0.5, 1.0]}, "state_dict")
    >>> r.int("count", lo=0), r.array("x", shape=(2,))
    (3, array([0.5, 1. ]))
    >>> r.float("missing")
    Traceback (most recent call last):
    ...
    ValueError: state_dict is missing 'missing' (it has ['count', 'x']); pass the dict that state_dict() returned.
    """

    def __init__(self, state, what: str):
        if not isinstance(state, Mapping):
            raise TypeError(f"{what} must be a dict returned by state_dict(), got {type(state).__name__}.")
        self.state, self.what = state, what

    def _name(self, key) -> str:
        return f"{self.what}[{key!r}]"

    def get(self, key):
        try:
            return self.state[key]
        except KeyError:
            raise ValueError(
                f"{self.what} is missing {key!r} (it has {sorted(map(str, self.state))}); "
                "pass the dict that state_dict() returned."
            ) from None

    def sub(self, key) -> StateReader:
        """A reader of the nested state under ``key``."""
        value = self.get(key)
        if not isinstance(value, Mapping):
            raise ValueError(f"{self._name(key)} must be a dict, got {type(value).__name__}.")
        return StateReader(value, self._name(key))

    def int(self, key, lo=None, hi=None) -> int:
        value = self.get(key)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{self._name(key)} must be an integer, got {value!r}.")
        value = int(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{self._name(key)}={value} is outside [{lo}, {hi}]; the state is corrupt.")
        return value

    def float(self, key, lo=None) -> float:
        value = self.get(key)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{self._name(key)} must be a number, got {value!r}.")
        value = float(value)
        if not math.isfinite(value) or (lo is not None and value < lo):
            raise ValueError(f"{self._name(key)}={value!r} must be finite" + (f" and >= {lo}" if lo is not None else "") + ".")
        return value

    def array(self, key, shape, integer=False, lo=None) -> np.ndarray:
        """A fresh array of exactly ``shape``: integers, or finite floats (no NaN or inf), all ``>= lo``."""
        value = self.get(key)
        try:
            arr = np.array(value, dtype=None if integer else np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{self._name(key)} must be a numeric array, got {type(value).__name__}.") from None
        if arr.shape != tuple(shape):
            raise ValueError(f"{self._name(key)} has shape {arr.shape}, expected {tuple(shape)}; the state is corrupt.")
        if integer:
            if arr.size and arr.dtype.kind not in "iu":
                raise ValueError(f"{self._name(key)} must hold integers, got dtype {arr.dtype}.")
            arr = arr.astype(np.int64)
        elif not np.all(np.isfinite(arr)):
            raise ValueError(f"{self._name(key)} holds NaN or inf; the state is corrupt.")
        if lo is not None and arr.size and arr.min() < lo:
            raise ValueError(f"{self._name(key)} holds values below {lo}; the state is corrupt.")
        return arr

    def keys(self, key) -> list:
        """A list of distinct hashable prompt keys."""
        value = self.get(key)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{self._name(key)} must be a list of prompt keys, got {type(value).__name__}.")
        value = list(value)
        if not all(_hashable(k) for k in value):
            raise ValueError(f"{self._name(key)} holds an unhashable key; the state is corrupt.")
        if len(set(value)) != len(value):
            raise ValueError(f"{self._name(key)} holds the same key twice; the state is corrupt.")
        return value
