"""Peer baselines beyond the paper: per-prompt trackers and cross-prompt shrinkage.

* ``"spo"``  -- SPO-style Beta tracker (Single-stream Policy Optimization):
  per-prompt ``Beta(alpha, beta)`` with a forgetting factor.
* ``"krpo"`` -- KRPO-style Kalman baseline: per-prompt scalar random walk.
* ``"jspo"`` -- James-Stein shrinkage of leave-one-out group means toward the
  other prompts' mean (stateless).
* ``"ema"``  -- per-prompt exponential moving average of group means.

The trackers' baseline for the current group uses only past steps (so it does
not depend on the current rewards and the gradient stays unbiased); a prompt
never seen before gets the documented fallback (the prior for SPO, the global
running mean of all rewards seen for KRPO and EMA -- 0 before any). They hold
at most ``max_prompts`` prompts (default 65536, about 1-2 MiB of arrays plus
Python's key index), forgetting the least recently updated first, and accept
rewards up to ``REWARD_LIMIT`` (2**128) in magnitude like every stateful
estimator.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator
>>> est = get_estimator("ema", decay=0.5)
>>> est.update(["q"], np.array([1.0]), step=1)
>>> est.update(["q"], np.array([0.0]), step=2)
>>> float(est.compute(["q"], np.array([1.0]), step=3).baselines[0])
0.5
"""

from __future__ import annotations

import numpy as np

from .base import (
    AdvantageEstimator,
    Batch,
    StatefulEstimator,
    StateReader,
    check_optional_positive_int,
    check_positive,
    check_unit,
    drop_rows,
    grown_rows,
    key_rows,
    register_estimator,
    rows_to_evict,
)
from .kae import eb_shrink

__all__ = ["SPO", "KRPO", "JSPO", "EMA"]

# Lower bound for columns that must be > 0 in a loaded state (the smallest positive float).
_POSITIVE = float(np.nextafter(0.0, 1.0))


class _KeyTable:
    """Per-key rows of float columns and each key's last update step, growable by
    doubling (amortised O(1) inserts) and bounded: at most ``max_prompts`` keys,
    the least recently updated forgotten first."""

    def __init__(self, columns, max_prompts=None):
        self.columns = tuple(columns)
        self.max_prompts = max_prompts
        self._index: dict = {}
        self._keys: list = []
        self._data = {c: np.zeros(8) for c in self.columns}
        self.last = np.zeros(8, dtype=np.int64)
        self.evicted = 0

    def rows(self, keys, create=False):
        """Row of each key (-1 if unknown); ``create`` first makes room, then adds the unknown keys."""
        if create and self.max_prompts is not None:
            drop = rows_to_evict(self._index, self._keys, keys, self.last[: len(self._keys)], self.max_prompts)
            if drop.size:
                arrays = drop_rows(self._index, self._keys, [self.last, *self._data.values()], drop)
                self.last, self._data = arrays[0], dict(zip(self.columns, arrays[1:]))
                self.evicted += int(drop.size)
        out = key_rows(self._index, self._keys, keys, create)
        size = self.last.shape[0]
        if create and len(self._keys) > size:
            new = grown_rows(size, len(self._keys), self.max_prompts)
            for c in self.columns:
                self._data[c] = np.concatenate([self._data[c], np.zeros(new - size)])
            self.last = np.concatenate([self.last, np.zeros(new - size, dtype=np.int64)])
        return out

    def __getitem__(self, col):
        return self._data[col]

    def __len__(self):
        return len(self._keys)

    @property
    def nbytes(self) -> int:
        return self.last.nbytes + sum(a.nbytes for a in self._data.values())

    def state_dict(self):
        n = len(self._keys)
        return {
            "keys": list(self._keys),
            "last": self.last[:n].copy(),
            "evicted": self.evicted,
            **{c: self._data[c][:n].copy() for c in self.columns},
        }

    def read_state(self, rd: StateReader, lo=None, last_update=0) -> _KeyTable:
        """A new table holding a validated saved state (this one is left alone); ``lo``
        maps a column to its smallest valid value."""
        lo = lo or {}
        table = _KeyTable(self.columns, self.max_prompts)
        keys = rd.keys("keys")
        n = len(keys)
        if self.max_prompts is not None and n > self.max_prompts:
            raise ValueError(f"{rd.what} holds {n} prompts, more than max_prompts={self.max_prompts}.")
        last = rd.array("last", (n,), integer=True, lo=1)
        if n and last.max() > last_update:
            raise ValueError(f"{rd.what}['last'] holds a step after the last update ({last_update}); the state is corrupt.")
        size = max(8, n)
        table._keys, table._index = keys, {k: i for i, k in enumerate(keys)}
        table.last = np.zeros(size, dtype=np.int64)
        table.last[:n] = last
        table.evicted = rd.int("evicted", lo=0)
        for c in self.columns:
            arr = np.zeros(size)
            arr[:n] = rd.array(c, (n,), lo=lo.get(c))
            table._data[c] = arr
        return table


class _Tracker(StatefulEstimator):
    """Shared state handling for per-prompt trackers.

    Subclasses implement ``_absorb(batch, rows, known)``: fold the step's group
    sums into their columns (``rows`` from the table, ``known`` where the prompt
    was held before this step); the table stamps each row's last update step.
    """

    _columns: tuple = ()
    _column_lo: dict = {}

    def __init__(self, max_prompts=65536):
        super().__init__()
        self.max_prompts = check_optional_positive_int("max_prompts", max_prompts)
        self._params["max_prompts"] = self.max_prompts
        self.table = _KeyTable(self._columns, self.max_prompts)

    def _lookup(self, batch: Batch):
        rows = self.table.rows(batch.uniq)
        return rows, rows >= 0

    def _column_baseline(self, batch: Batch, column: str):
        """Baselines from one per-prompt column of past steps; unseen prompts get the global running mean."""
        rows, known = self._lookup(batch)
        v = np.where(known, self.table[column][np.maximum(rows, 0)], self.global_mean)
        base = v[batch.inverse]
        return batch.z - base, base

    def _update(self, batch: Batch):
        rows = self.table.rows(batch.uniq, create=True)
        known = self.table.last[rows] > 0  # rows of new keys are zero
        self._absorb(batch, rows, known)
        self.table.last[rows] = batch.step

    def _absorb(self, batch: Batch, rows, known):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self):
        state = super().state_dict()
        state["table"] = self.table.state_dict()
        return state

    def _read_state(self, reader: StateReader) -> dict:
        staged = super()._read_state(reader)
        staged["table"] = self.table.read_state(reader.sub("table"), self._column_lo, staged["_last_update"])
        return staged


@register_estimator("spo", "beta_tracker")
class SPO(_Tracker):
    """SPO-style per-prompt Beta tracker with forgetting (Xu et al., 2025).

    Each prompt keeps ``Beta(alpha, beta)``; the baseline is its mean
    ``alpha / (alpha + beta)`` from past steps. When the prompt's group of ``G``
    rewards arrives (:meth:`update`): ``alpha <- rho alpha + sum Z``,
    ``beta <- rho beta + sum (1 - Z)`` (decay once per visit). SPO adapts
    ``rho`` to the policy's KL drift, warm-starts the tracker from a few
    initial samples and normalises advantages over the batch; here ``rho`` is
    fixed, an unseen prompt starts at the prior, and advantages are the raw
    ``Z - baseline`` (as for every estimator here, so value and gradient errors
    compare like with like). Rewards must lie in [0, 1] (success probabilities).

    Parameters
    ----------
    rho : float in (0, 1], default 0.9
        Forgetting factor per visit.
    alpha0, beta0 : float > 0, default 0.5
        Prior of an unseen prompt (Jeffreys; baseline 0.5).
    max_prompts : int or None, default 65536
        Most prompts tracked; beyond it the least recently updated are
        forgotten (one that returns is unseen again). ``None``: no bound.

    Examples
    --------
    >>> import numpy as np
    >>> est = SPO(rho=0.5)
    >>> est.update(["q"] * 4, np.array([1.0, 1.0, 1.0, 0.0]), step=1)   # alpha = 0.25 + 3, beta = 0.25 + 1
    >>> est.compute(["q", "new"], np.array([1.0, 0.0]), step=2).baselines   # 3.25 / 4.5 and the prior
    array([0.72222222, 0.5       ])
    """

    _columns = ("alpha", "beta")
    _column_lo = {"alpha": _POSITIVE, "beta": _POSITIVE}

    def __init__(self, rho=0.9, alpha0=0.5, beta0=0.5, max_prompts=65536):
        self.rho = check_unit("rho", rho, open_low=True)
        self.alpha0 = check_positive("alpha0", alpha0)
        self.beta0 = check_positive("beta0", beta0)
        self._params = {"rho": self.rho, "alpha0": self.alpha0, "beta0": self.beta0}
        super().__init__(max_prompts)

    def _check_range(self, batch):
        if np.any(batch.z < 0) or np.any(batch.z > 1):
            raise ValueError(
                "spo needs rewards in [0, 1] (Beta-Bernoulli tracker); rescale the rewards or use 'ema'/'krpo'."
            )

    def _compute(self, batch: Batch):
        self._check_range(batch)
        rows, known = self._lookup(batch)
        a = np.where(known, self.table["alpha"][np.maximum(rows, 0)], self.alpha0)
        b = np.where(known, self.table["beta"][np.maximum(rows, 0)], self.beta0)
        base = (a / (a + b))[batch.inverse]
        return batch.z - base, base

    def _update(self, batch: Batch):
        self._check_range(batch)
        super()._update(batch)

    def _absorb(self, batch: Batch, rows, known):
        a, b = self.table["alpha"], self.table["beta"]
        a[rows[~known]], b[rows[~known]] = self.alpha0, self.beta0
        a[rows] = self.rho * a[rows] + batch.sums
        b[rows] = self.rho * b[rows] + (batch.counts - batch.sums)


@register_estimator("krpo", "kalman")
class KRPO(_Tracker):
    """KRPO-style Kalman baseline: per-prompt value as a scalar random walk.

    State model over the training step: ``V_{i} = V_{i-1} + w``, ``w ~ N(0, q)``
    per elapsed step; observations ``Z = V + e``, ``e ~ N(0, r)``. The baseline is
    the filter's prediction from past steps, ``x`` (its variance grows to
    ``P + q (i - last)``). :meth:`update` absorbs the group's ``G`` rewards at
    once: ``P' = 1/(1/P_pred + G/r)``, ``x' = P'(x/P_pred + sum Z / r)``, computed
    as the convex step ``x' = x + k (mean Z - x)``, ``k = 1/(1 + r/(G P_pred))``,
    which cannot overflow. Unseen prompts start at the global running mean with
    variance ``p0``.
    (The KRPO paper filters rewards within a group; this is the cross-step
    variant that makes it comparable with KAE, documented as such.)

    Parameters
    ----------
    q : float > 0, default 1e-3
        Process-noise variance per step (how fast values drift).
    r : float > 0, default 0.25
        Observation-noise variance (0.25 is the largest Bernoulli variance).
    p0 : float > 0, default 0.25
        Prior variance of an unseen prompt.
    max_prompts : int or None, default 65536
        Most prompts tracked; beyond it the least recently updated are
        forgotten (one that returns is unseen again). ``None``: no bound.

    Examples
    --------
    >>> import numpy as np
    >>> est = KRPO(q=1e-3, r=0.25, p0=0.25)
    >>> est.update([0, 0, 0], np.array([1.0, 1.0, 0.0]), step=1)   # prior: global mean 0, P = 0.25
    >>> round(float(est.compute([0], np.array([1.0]), step=2).baselines[0]), 4)   # 0.0625 * (2 / 0.25)
    0.5
    """

    _columns = ("x", "P")
    _column_lo = {"P": _POSITIVE}

    def __init__(self, q=1e-3, r=0.25, p0=0.25, max_prompts=65536):
        self.q = check_positive("q", q)
        self.r = check_positive("r", r)
        self.p0 = check_positive("p0", p0)
        self._params = {"q": self.q, "r": self.r, "p0": self.p0}
        super().__init__(max_prompts)

    def _compute(self, batch: Batch):
        return self._column_baseline(batch, "x")

    def _absorb(self, batch: Batch, rows, known):
        x, P = self.table["x"], self.table["P"]
        new = rows[~known]
        x[new], P[new] = self.global_mean, self.p0
        gap = np.where(known, batch.step - self.table.last[rows], 0)
        p_pred = P[rows] + self.q * gap
        gain = 1.0 / (1.0 + self.r / (batch.counts * p_pred))
        x[rows] = x[rows] + gain * (batch.sums / batch.counts - x[rows])
        P[rows] = 1.0 / (1.0 / p_pred + batch.counts / self.r)


@register_estimator("ema")
class EMA(_Tracker):
    """Per-prompt exponential moving average of group means.

    ``v <- decay * v + (1 - decay) * mean(Z_group)`` per visit; the first visit
    sets ``v`` to the group mean. Baseline: ``v`` from past steps (unseen: the
    global running mean).

    Parameters
    ----------
    decay : float in [0, 1), default 0.9
    max_prompts : int or None, default 65536
        Most prompts tracked; beyond it the least recently updated are
        forgotten (one that returns is unseen again). ``None``: no bound.

    Examples
    --------
    >>> import numpy as np
    >>> est = EMA(decay=0.5)
    >>> est.update([1, 1], np.array([1.0, 1.0]), step=1)   # first visit: v = 1
    >>> est.update([1, 1], np.array([0.0, 1.0]), step=2)   # v = 0.5 * 1 + 0.5 * 0.5
    >>> est.compute([1, 2], np.array([1.0, 0.0]), step=3).baselines   # prompt 2 unseen: global mean 3/4
    array([0.75, 0.75])
    """

    _columns = ("v",)

    def __init__(self, decay=0.9, max_prompts=65536):
        self.decay = check_unit("decay", decay, open_high=True)
        self._params = {"decay": self.decay}
        super().__init__(max_prompts)

    def _compute(self, batch: Batch):
        return self._column_baseline(batch, "v")

    def _absorb(self, batch: Batch, rows, known):
        v = self.table["v"]
        mean = batch.sums / batch.counts
        v[rows] = np.where(known, self.decay * v[rows] + (1.0 - self.decay) * mean, mean)


@register_estimator("jspo", "james_stein")
class JSPO(AdvantageEstimator):
    """James-Stein shrinkage baseline toward the other prompts' mean (stateless).

    Two-level leave-one-out, as in the shrinkage baselines of Zeng et al.
    (2025, "Shrinking the Variance"), so the baseline of response ``g`` of
    prompt ``k`` does not use its own reward (up to the shrinkage factor):

        b_g = m_{-k} + (1 - B_g) (loo_g - m_{-k})

    * ``loo_g = (S_k - Z_g) / (G_k - 1)``: the other responses' mean (RLOO);
    * ``m_{-k}``: mean of the other prompts' group means;
    * ``B_g = t_g / (t_g + tau^2)`` (:func:`kernelvalue.advantage.kae.eb_shrink`),
      ``t_g = sigma^2 / (G_k - 1)`` the variance of ``loo_g``, ``tau^2`` the
      spread of the group means beyond their noise ``sigma^2 / G_j``, and
      ``sigma^2`` the pooled unbiased within-group variance. ``B_g`` sees
      ``Z_g`` only through ``sigma^2`` and ``tau^2`` (``O(1/n)``, ``O(1/p)``).

    A group of one has no ``loo_g``: ``B = 1``, its baseline is ``m_{-k}``
    (0 when the batch holds a single prompt, RLOO's singleton rule). With
    fewer than three prompts (``tau^2`` not estimable) the other groups get
    no shrinkage: RLOO.

    Examples
    --------
    >>> import numpy as np
    >>> keys = [0, 0, 1, 1, 2, 2, 3]
    >>> z = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    >>> # sigma^2 = 1/6, tau^2 = 1/8: pairs B = 4/7 (prompt 1: 2/3 + (3/7)(1 - 2/3) and
    >>> # 2/3 + (3/7)(0 - 2/3)); the singleton prompt 3 gets m_{-3} = 1.5 / 3
    >>> JSPO().compute(keys, z, step=1).baselines.round(3)
    array([0.714, 0.714, 0.81 , 0.381, 0.476, 0.476, 0.5  ])
    """

    rescales = True

    def _compute(self, batch: Batch):
        inv, g = batch.inverse, batch.counts
        mean = batch.sums / g
        p = batch.n_groups
        center = (mean.sum() - mean) / (p - 1) if p > 1 else np.zeros(1)
        others = g[inv] - 1.0
        multi = others > 0
        loo = np.where(multi, (batch.sums[inv] - batch.z) / np.maximum(others, 1.0), 0.0)
        dev = batch.z - mean[inv]
        df = float(np.sum(g - 1.0))
        if df > 0:
            sigma2 = float(np.sum(dev * dev)) / df
            B = eb_shrink(mean, sigma2 / g, np.where(multi, sigma2 / np.maximum(others, 1.0), np.inf))
        else:
            B = np.zeros(batch.z.shape[0])
        B = np.where(multi, B, 1.0)
        c = center[inv]
        base = c + (1.0 - B) * (loo - c)
        return batch.unscale(batch.z - base), batch.unscale(base)
