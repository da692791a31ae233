"""Peer baselines beyond the paper: per-prompt trackers and cross-prompt shrinkage.

* ``"spo"``  -- SPO-style Beta tracker (Single-stream Policy Optimization):
  per-prompt ``Beta(alpha, beta)`` with a forgetting factor.
* ``"krpo"`` -- KRPO-style Kalman baseline: per-prompt scalar random walk.
* ``"jspo"`` -- James-Stein shrinkage of group means toward the batch mean (stateless).
* ``"ema"``  -- per-prompt exponential moving average of group means.

The trackers' baseline for the current group uses only past steps (so it does
not depend on the current rewards and the gradient stays unbiased); a prompt
never seen before gets the documented fallback (the prior for SPO, the global
running mean of all rewards seen for KRPO and EMA -- 0 before any).

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

from .base import AdvantageEstimator, Batch, StatefulEstimator, check_positive, check_unit, register_estimator
from .kae import eb_shrink

__all__ = ["SPO", "KRPO", "JSPO", "EMA"]


class _KeyTable:
    """Per-key rows of float columns, growable by doubling (amortised O(1) inserts)."""

    def __init__(self, columns):
        self.columns = tuple(columns)
        self._index: dict = {}
        self._keys: list = []
        self._data = {c: np.zeros(8) for c in self.columns}

    def rows(self, keys, create=False):
        index = self._index
        if not create:
            return np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        out = np.empty(len(keys), dtype=np.int64)
        for pos, k in enumerate(keys):  # distinct prompts of the batch, not responses
            row = index.get(k)
            if row is None:
                row = index[k] = len(self._keys)
                self._keys.append(k)
            out[pos] = row
        size = next(iter(self._data.values())).shape[0]
        if len(self._keys) > size:
            new = max(len(self._keys), 2 * size)
            for c in self.columns:
                self._data[c] = np.concatenate([self._data[c], np.zeros(new - size)])
        return out

    def __getitem__(self, col):
        return self._data[col]

    def __len__(self):
        return len(self._keys)

    def state_dict(self):
        n = len(self._keys)
        return {"keys": list(self._keys), **{c: self._data[c][:n].copy() for c in self.columns}}

    def load_state_dict(self, state):
        self._keys = list(state["keys"])
        self._index = {k: i for i, k in enumerate(self._keys)}
        n = len(self._keys)
        size = max(8, n)
        for c in self.columns:
            arr = np.zeros(size)
            arr[:n] = state[c]
            self._data[c] = arr


class _Tracker(StatefulEstimator):
    """Shared state handling for per-prompt trackers."""

    _columns: tuple = ()

    def __init__(self):
        super().__init__()
        self.table = _KeyTable(self._columns)

    def _lookup(self, batch: Batch):
        rows = self.table.rows(batch.uniq)
        return rows, rows >= 0

    def state_dict(self):
        state = super().state_dict()
        state["params"] = dict(self._params)
        state["table"] = self.table.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if state["params"] != self._params:
            raise ValueError(f"state_dict was saved with {state['params']}, this estimator has {self._params}.")
        self.table.load_state_dict(state["table"])


@register_estimator("spo", "beta_tracker")
class SPO(_Tracker):
    """SPO-style per-prompt Beta tracker with forgetting (Xu et al., 2025).

    Each prompt keeps ``Beta(alpha, beta)``; the baseline is its mean
    ``alpha / (alpha + beta)`` from past steps. When the prompt's group of ``G``
    rewards arrives (:meth:`update`): ``alpha <- rho alpha + sum Z``,
    ``beta <- rho beta + sum (1 - Z)`` (decay once per visit). SPO adapts
    ``rho`` to the policy's KL drift; here it is a fixed parameter. Rewards
    must lie in [0, 1] (success probabilities).

    Parameters
    ----------
    rho : float in (0, 1], default 0.9
        Forgetting factor per visit.
    alpha0, beta0 : float > 0, default 0.5
        Prior of an unseen prompt (Jeffreys; baseline 0.5).
    """

    _columns = ("alpha", "beta")

    def __init__(self, rho=0.9, alpha0=0.5, beta0=0.5):
        self.rho = check_unit("rho", rho, open_low=True)
        self.alpha0 = check_positive("alpha0", alpha0)
        self.beta0 = check_positive("beta0", beta0)
        self._params = {"rho": self.rho, "alpha0": self.alpha0, "beta0": self.beta0}
        super().__init__()

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
        known = self.table.rows(batch.uniq) >= 0
        rows = self.table.rows(batch.uniq, create=True)
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
    once: ``P' = 1/(1/P_pred + G/r)``, ``x' = P'(x/P_pred + sum Z / r)``.
    Unseen prompts start at the global running mean with variance ``p0``.
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
    """

    _columns = ("x", "P", "last")

    def __init__(self, q=1e-3, r=0.25, p0=0.25):
        self.q = check_positive("q", q)
        self.r = check_positive("r", r)
        self.p0 = check_positive("p0", p0)
        self._params = {"q": self.q, "r": self.r, "p0": self.p0}
        super().__init__()

    def _compute(self, batch: Batch):
        rows, known = self._lookup(batch)
        x = np.where(known, self.table["x"][np.maximum(rows, 0)], self.global_mean)
        base = x[batch.inverse]
        return batch.z - base, base

    def _update(self, batch: Batch):
        known = self.table.rows(batch.uniq) >= 0
        rows = self.table.rows(batch.uniq, create=True)
        x, P, last = self.table["x"], self.table["P"], self.table["last"]
        new = rows[~known]
        x[new], P[new], last[new] = self.global_mean, self.p0, batch.step
        p_pred = P[rows] + self.q * (batch.step - last[rows])
        p_post = 1.0 / (1.0 / p_pred + batch.counts / self.r)
        x[rows] = p_post * (x[rows] / p_pred + batch.sums / self.r)
        P[rows] = p_post
        last[rows] = batch.step


@register_estimator("ema")
class EMA(_Tracker):
    """Per-prompt exponential moving average of group means.

    ``v <- decay * v + (1 - decay) * mean(Z_group)`` per visit; the first visit
    sets ``v`` to the group mean. Baseline: ``v`` from past steps (unseen: the
    global running mean).

    Parameters
    ----------
    decay : float in [0, 1), default 0.9
    """

    _columns = ("v",)

    def __init__(self, decay=0.9):
        self.decay = check_unit("decay", decay, open_high=True)
        self._params = {"decay": self.decay}
        super().__init__()

    def _compute(self, batch: Batch):
        rows, known = self._lookup(batch)
        v = np.where(known, self.table["v"][np.maximum(rows, 0)], self.global_mean)
        base = v[batch.inverse]
        return batch.z - base, base

    def _update(self, batch: Batch):
        known = self.table.rows(batch.uniq) >= 0
        rows = self.table.rows(batch.uniq, create=True)
        v = self.table["v"]
        mean = batch.sums / batch.counts
        v[rows] = np.where(known, self.decay * v[rows] + (1.0 - self.decay) * mean, mean)


@register_estimator("jspo", "james_stein")
class JSPO(AdvantageEstimator):
    """James-Stein shrinkage of group means toward the batch mean (stateless).

    Baseline of prompt ``k``: ``m_{-k} + (1 - B_k)(mean_k - m_{-k})`` with
    ``m_{-k}`` the mean of the other prompts' group means, ``B_k =
    s_k^2/(s_k^2 + tau^2)`` from :func:`kernelvalue.advantage.kae.eb_shrink`,
    ``s_k^2 = sigma^2 / G_k`` and ``sigma^2`` the pooled unbiased within-group
    variance (groups with ``G >= 2``). No shrinkage (plain group mean, as
    Dr. GRPO without the singleton rule) with fewer than three prompts or no
    group of two or more.
    """

    def _compute(self, batch: Batch):
        inv, g = batch.inverse, batch.counts
        mean = batch.sums / g
        dev = batch.z - mean[inv]
        ss = batch.group_sum(dev * dev)
        df = float(np.sum(g - 1.0))
        p = batch.n_groups
        if df > 0 and p >= 3:
            sigma2 = float(ss.sum()) / df
            center = (mean.sum() - mean) / (p - 1)
            B = eb_shrink(mean, sigma2 / g, center)
            base = center + (1.0 - B) * (mean - center)
        else:
            base = mean
        base = base[inv]
        return batch.z - base, base
