"""Kernelized Advantage Estimation (KAE) and three extensions beyond the paper.

KAE (Gong et al., 2026) smooths a prompt's past rewards over the training-step
index with a one-sided Nadaraya-Watson window and pools them with the other
responses of the current group (leave-one-out, each with weight ``K(0)``)::

    V_hat^(g) = [ sum_hist K(u_j) Z_j + K(0) sum_{k != g} Z_k ]
                / [ sum_hist K(u_j) + (G - 1) K(0) ]
    A^(g)     = Z_g - V_hat^(g)

Bandwidth, in two readings (``window``; the paper's text leaves it open):

* ``"relative"`` (default, the formula as summarised): ``u_j = (i - I_j)/(i h)``,
  a window of ``i h`` steps; default ``h = 0.2``.
* ``"absolute"``: ``u_j = (i - I_j)/h``, a window of ``h`` steps (the reading
  under which the experiments' "h ~ 10" is about one J-block); default
  ``h = 10``.

Every estimator here records its reading in ``params`` and ``state_dict()``.

Registered names: ``"kae"`` (the paper), ``"kae_ll"`` (local linear in the step
index), ``"kae_cv"`` (bandwidth chosen online by forward leave-one-out),
``"kae_shrink"`` (empirical-Bayes shrinkage across prompts).

Fallback (the paper leaves it open): where the denominator is zero -- ``G = 1``
and no history inside the window -- the baseline is the global running mean of
every reward the estimator has been updated with (0 before any update). It is
a constant w.r.t. the current response, so the gradient stays unbiased, and it
is the natural "nothing known about this prompt" value.

Default bandwidth: the paper reports results robust to ``h`` and does not fix
one in what we have. Relative ``h = 0.2`` keeps the last fifth of training
(e.g. 20 steps at step 100), i.e. a few J-blocks of the schedule; absolute
``h = 10`` keeps the last 10 steps (one J-block at J = 10).

Rewards must satisfy ``|Z| <= 2**128`` (``REWARD_LIMIT``, the float32 range):
the history keeps sums of rewards and of their squares. Larger rewards raise a
ValueError before anything is recorded; results that do not fit the output
dtype (e.g. float32 advantages near 3.4e38) raise one too.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator
>>> est = get_estimator("kae", bandwidth=1.0)
>>> est.update([0, 0], np.array([1.0, 0.0]), step=1)
>>> res = est.compute([0, 0], np.array([1.0, 1.0]), step=2)
>>> res.baselines   # history weight K((2-1)/(2*1)) = 0.5 each: (0.5*1 + 1*1) / (0.5*2 + 1)
array([0.75, 0.75])
"""

from __future__ import annotations

import numpy as np

from ..kernels import get_kernel
from .base import (
    Batch,
    StatefulEstimator,
    StateReader,
    check_bool,
    check_choice,
    check_eps,
    check_optional_positive_int,
    check_positive,
    check_positive_int,
    check_unit,
    register_estimator,
)
from .history import WINDOWS, RewardHistory

__all__ = ["KAE", "KAELocalLinear", "KAECrossValidated", "KAEShrink", "DEFAULT_BANDWIDTH"]

# Default h per reading: the last fifth of training, or the last 10 steps.
DEFAULT_BANDWIDTH = {"relative": 0.2, "absolute": 10.0}


@register_estimator("kae", "kernelized")
class KAE(StatefulEstimator):
    """Kernelized Advantage Estimation, exactly as in the paper.

    Parameters
    ----------
    bandwidth : float, optional
        ``h``: relative (at step ``i`` the window spans ``i h`` steps; default
        0.2) or a number of steps (``window="absolute"``; default 10).
    kernel : str or Kernel, default "triangular"
        Any of :data:`kernelvalue.kernels.KERNELS` (the paper: triangular, and
        exponential in its sensitivity study).
    scale_std : bool, default False
        Divide advantages by ``sigma + eps`` where ``sigma^2`` is the prompt's
        kernel-weighted reward variance (history and the whole current group,
        with the same weights). Off by default: the paper's formula has no std.
    eps : float, default 1e-6
        Added to ``sigma`` when ``scale_std`` (must then be > 0: a prompt with a
        single reward in its window has ``sigma = 0``).
    max_per_prompt : int or None, default 512
        History cap per prompt (records = distinct steps), see :class:`RewardHistory`.
    window : {"relative", "absolute"}, default "relative"
        Reading of the bandwidth: ``K((i - I_j)/(i h))`` or ``K((i - I_j)/h)``.
    max_prompts : int or None, default 65536
        Most prompts whose history is kept; beyond it the least recently
        updated are forgotten (:class:`RewardHistory`).
    min_weight : float in [0, 1), default 0
        Gaussian/exponential kernels: truncate ``K`` where it falls to
        ``min_weight * K(0)`` so old records can be freed (0: only where it
        underflows to exactly 0, which changes nothing).

    Notes
    -----
    Denominator zero (``G = 1``, nothing in the window): baseline = global running
    mean of all rewards seen so far (0 before any update).

    Examples
    --------
    >>> import numpy as np
    >>> est = KAE(bandwidth=0.2)
    >>> est.compute(["q", "q", "q"], np.array([1.0, 0.0, 0.0]), step=1).baselines  # leave-one-out
    array([0. , 0.5, 0.5])
    >>> est = KAE(window="absolute")        # h = 10 steps
    >>> est.update(["q"], np.array([1.0]), step=1)
    >>> est.compute(["q", "q"], np.array([0.0, 0.0]), step=6).baselines   # K(5/10) = 0.5: (0.5 + 0) / 1.5
    array([0.33333333, 0.33333333])
    """

    def __init__(
        self,
        bandwidth=None,
        kernel="triangular",
        scale_std=False,
        eps=1e-6,
        max_per_prompt=512,
        *,
        window="relative",
        max_prompts=65536,
        min_weight=0.0,
    ):
        super().__init__()
        self.window = check_choice("window", window, WINDOWS)
        self.bandwidth = check_positive("bandwidth", DEFAULT_BANDWIDTH[self.window] if bandwidth is None else bandwidth)
        self.kernel = get_kernel(kernel)
        self.scale_std = check_bool("scale_std", scale_std)
        self.eps = check_eps("eps", eps)
        if self.scale_std and self.eps == 0:
            raise ValueError("eps must be > 0 with scale_std=True: a prompt with one reward in its window has sigma = 0.")
        self.max_per_prompt = check_optional_positive_int("max_per_prompt", max_per_prompt)
        self.max_prompts = check_optional_positive_int("max_prompts", max_prompts)
        self.min_weight = check_unit("min_weight", min_weight, open_high=True)
        self._params = {
            "bandwidth": self.bandwidth,
            "kernel": self.kernel.name,
            "scale_std": self.scale_std,
            "eps": self.eps,
            "max_per_prompt": self.max_per_prompt,
            "window": self.window,
            "max_prompts": self.max_prompts,
            "min_weight": self.min_weight,
        }
        self.history = self._new_history()

    def _new_history(self) -> RewardHistory:
        return RewardHistory(
            self.kernel,
            self._history_bandwidth(),
            max_per_prompt=self.max_per_prompt,
            window=self.window,
            max_prompts=self.max_prompts,
            min_weight=self.min_weight,
        )

    def _history_bandwidth(self) -> float:
        return self.bandwidth

    # ---------------------------------------------------------------- pieces
    def _sums(self, batch: Batch, moments, bandwidth=None):
        rows = self.history.slots(batch.uniq)
        h = self.bandwidth if bandwidth is None else bandwidth
        return self.history.lookup(step=batch.step, bandwidth=h, moments=moments, rows=rows)

    def _nw(self, batch: Batch, hs):
        """Leave-one-out NW baselines (n,) and the mask where the denominator is 0."""
        k0 = self.kernel.k0
        inv = batch.inverse
        den = hs["w0"][inv] + k0 * (batch.counts[inv] - 1.0)
        num = hs["wz"][inv] + k0 * (batch.sums[inv] - batch.z)
        empty = ~(den > 0)
        base = np.where(empty, self.global_mean, num / np.where(empty, 1.0, den))
        return base, empty

    def _scale(self, batch: Batch, adv, hs):
        if not self.scale_std:
            return adv
        k0 = self.kernel.k0
        w = hs["w0"] + k0 * batch.counts
        m1 = (hs["wz"] + k0 * batch.sums) / w
        m2 = (hs["wzz"] + k0 * batch.group_sum(batch.z * batch.z)) / w
        sd = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
        return adv / (sd[batch.inverse] + self.eps)

    def _moments(self):
        return ("w0", "wz", "wzz") if self.scale_std else ("w0", "wz")

    def _compute(self, batch: Batch):
        hs = self._sums(batch, self._moments())
        base, _ = self._nw(batch, hs)
        return self._scale(batch, batch.z - base, hs), base

    def _update(self, batch: Batch) -> None:
        self.history.append(batch.uniq, batch.counts, batch.sums, batch.group_sum(batch.z * batch.z), batch.step)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["history"] = self.history.state_dict()
        return state

    def _read_state(self, reader: StateReader) -> dict:
        staged = super()._read_state(reader)
        history = self._new_history()
        history.__dict__.update(history._read_state(reader.sub("history")))
        if history._last_step > staged["_last_update"]:
            raise ValueError(
                f"state_dict['history'] holds step {history._last_step}, after the last update "
                f"({staged['_last_update']}); the state is corrupt."
            )
        staged["history"] = history
        return staged


@register_estimator("kae_ll", "kae_local_linear")
class KAELocalLinear(KAE):
    """KAE with a local-linear fit over the step index (removes the one-sided drift bias).

    A one-sided NW window at the current step ``i`` estimates ``V`` at the
    window's centre of mass, about ``i h / 3`` steps in the past for the
    triangular kernel, so under a drift of slope ``V'`` it carries an ``O(V' i h)``
    bias. The local-linear fit -- weighted least squares of ``Z`` on
    ``d = (I_j - i)/(i h)`` with the same weights (history ``K(u_j)``, the other
    ``G - 1`` current responses at ``d = 0`` with ``K(0)``), leave-one-out over
    the current group -- extrapolates the trend to ``d = 0`` and removes that
    term, at the price of a larger variance (boundary extrapolation). Its
    predictions can leave the reward range.

    Falls back to KAE's NW estimate where the local design is degenerate
    (``det <= 1e-10 * S0 * S2``, i.e. fewer than two distinct steps with weight:
    the same relative tolerance as :mod:`kernelvalue.smoothing`), and to the
    global running mean where NW is undefined too.

    Parameters are those of :class:`KAE`.

    Examples
    --------
    >>> import numpy as np
    >>> est = KAELocalLinear(bandwidth=0.5)
    >>> for i in range(1, 11):
    ...     est.update([0, 0], np.full(2, 0.05 * i), step=i)   # a noise-free linear trend
    >>> round(float(est.compute([0], np.array([0.55]), step=11).baselines[0]), 10)
    0.55
    """

    def _compute(self, batch: Batch):
        moments = ("w0", "wz", "wd", "wdd", "wdz") + (("wzz",) if self.scale_std else ())
        hs = self._sums(batch, moments)
        nw, _ = self._nw(batch, hs)
        k0, inv = self.kernel.k0, batch.inverse
        s0 = hs["w0"][inv] + k0 * (batch.counts[inv] - 1.0)
        s1, s2 = hs["wd"][inv], hs["wdd"][inv]
        y0 = hs["wz"][inv] + k0 * (batch.sums[inv] - batch.z)
        y1 = hs["wdz"][inv]
        det = s0 * s2 - s1 * s1
        ok = det > 1e-10 * s0 * s2
        ll = (s2 * y0 - s1 * y1) / np.where(ok, det, 1.0)
        base = np.where(ok, ll, nw)
        return self._scale(batch, batch.z - base, hs), base


@register_estimator("kae_cv")
class KAECrossValidated(KAE):
    """KAE whose bandwidth is chosen online by forward leave-one-out over past steps.

    At every :meth:`update`, before the step's rewards join the history, each of
    its rewards is predicted by KAE at every bandwidth of ``grid`` -- from the
    prompt's strictly earlier history plus the other responses of its group,
    i.e. leave-one-out with the one-sided window KAE itself uses -- and the
    squared errors are pooled over all prompts into a running score per ``h``
    (discounted by ``cv_decay`` per update, so the choice tracks how fast the
    policy moves). Every ``refit_every`` steps the bandwidth becomes the grid
    point with the smallest mean score. Responses whose prediction is undefined
    for some ``h`` (``G = 1``, empty window) are left out for every ``h``, so all
    grid points are scored on the same responses.

    Why not :func:`kernelvalue.bandwidth.select_bandwidth` ("loo")? Its
    leave-one-out is two-sided with an absolute bandwidth: it would score
    interior fits that use future rewards, which KAE never has. This criterion
    scores exactly the predictions KAE makes (boundary, relative window), costs
    one ``(prompts, records, |grid|)`` lookup per step, and needs no refits over
    the whole history. Kernels come from :mod:`kernelvalue.kernels`.

    Parameters
    ----------
    bandwidth : float, optional
        Bandwidth used until the first selection (default as in :class:`KAE`).
    grid : array-like, optional
        Candidate ``h`` values; default ``geomspace(0.02, 0.5, 9)`` (relative)
        or ``geomspace(2, 50, 9)`` steps (absolute: the same windows at step
        100). The history keeps what the largest needs.
    refit_every : int, default 5
        Steps between selections.
    cv_decay : float in (0, 1], default 0.95
        Discount of past scores per update (1 = never forget).
    kernel, scale_std, eps, max_per_prompt, window, max_prompts, min_weight
        As in :class:`KAE`.

    Attributes
    ----------
    cv_scores_ : ndarray (|grid|,)
        Discounted sum of squared errors per grid point.
    cv_counts_ : ndarray (|grid|,)
        Discounted number of responses scored.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> est = KAECrossValidated(grid=[0.05, 0.2, 0.5], refit_every=5)
    >>> for i in range(1, 41):    # stationary prompt: the widest window wins
    ...     z = (rng.random(4) < 0.3).astype(float)
    ...     _ = est.compute([0] * 4, z, step=i)
    ...     est.update([0] * 4, z, step=i)
    >>> est.bandwidth
    0.5
    """

    def __init__(
        self,
        bandwidth=None,
        kernel="triangular",
        grid=None,
        refit_every=5,
        cv_decay=0.95,
        scale_std=False,
        eps=1e-6,
        max_per_prompt=512,
        *,
        window="relative",
        max_prompts=65536,
        min_weight=0.0,
    ):
        window = check_choice("window", window, WINDOWS)
        if grid is None:
            g = np.geomspace(0.02, 0.5, 9) if window == "relative" else np.geomspace(2.0, 50.0, 9)
        else:
            g = np.asarray(grid)
            if g.dtype.kind not in "iuf" or g.ndim > 1:
                raise TypeError(f"grid must be a 1-D array of numbers (bandwidths), got {grid!r}.")
            g = g.astype(np.float64).reshape(-1)
        if g.size == 0 or not np.all(np.isfinite(g)) or np.any(g <= 0):
            raise ValueError(f"grid must hold one or more finite bandwidths > 0, got {grid!r}.")
        self.grid = np.unique(g)
        self.refit_every = check_positive_int("refit_every", refit_every)
        self.cv_decay = check_unit("cv_decay", cv_decay, open_low=True)
        super().__init__(
            bandwidth, kernel, scale_std, eps, max_per_prompt, window=window, max_prompts=max_prompts, min_weight=min_weight
        )
        self._params.update(grid=self.grid.tolist(), refit_every=self.refit_every, cv_decay=self.cv_decay)
        self.cv_scores_ = np.zeros(self.grid.shape[0])
        self.cv_counts_ = np.zeros(self.grid.shape[0])
        self._last_refit = 0

    def _history_bandwidth(self) -> float:
        return float(max(self.grid.max(), self._params["bandwidth"]))

    def _update(self, batch: Batch) -> None:
        hs = self._sums(batch, ("w0", "wz"), bandwidth=self.grid)  # (p, H)
        k0, inv = self.kernel.k0, batch.inverse
        den = hs["w0"][inv] + k0 * (batch.counts[inv] - 1.0)[:, None]
        num = hs["wz"][inv] + k0 * (batch.sums[inv] - batch.z)[:, None]
        ok = np.all(den > 0, axis=1)
        if ok.any():
            err = batch.z[ok, None] - num[ok] / den[ok]
            self.cv_scores_ = self.cv_decay * self.cv_scores_ + np.sum(err * err, axis=0)
            self.cv_counts_ = self.cv_decay * self.cv_counts_ + float(ok.sum())
        super()._update(batch)
        if batch.step - self._last_refit >= self.refit_every and np.all(self.cv_counts_ > 0):
            mse = self.cv_scores_ / self.cv_counts_
            self.bandwidth = float(self.grid[int(np.argmin(mse))])
            self._last_refit = batch.step

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["cv"] = {
            "bandwidth": self.bandwidth,
            "scores": self.cv_scores_.copy(),
            "counts": self.cv_counts_.copy(),
            "last_refit": self._last_refit,
        }
        return state

    def _read_state(self, reader: StateReader) -> dict:
        staged = super()._read_state(reader)
        cv = reader.sub("cv")
        bandwidth = cv.float("bandwidth")
        if bandwidth not in set(self.grid.tolist()) | {self._params["bandwidth"]}:
            raise ValueError(f"{cv.what}['bandwidth']={bandwidth} is neither the initial bandwidth nor a grid point.")
        h = self.grid.shape[0]
        staged.update(
            bandwidth=bandwidth,
            cv_scores_=cv.array("scores", (h,), lo=0.0),
            cv_counts_=cv.array("counts", (h,), lo=0.0),
            _last_refit=cv.int("last_refit", lo=0, hi=staged["_last_update"]),
        )
        return staged


def eb_shrink(estimates, variances, target_variances=None):
    """Empirical-Bayes (James-Stein type) shrinkage factors.

    Model: ``estimate_k ~ N(theta_k, s_k^2)``, ``theta_k ~ N(m, tau^2)``. With
    ``tau^2`` estimated by moments, ``tau^2 = max(0, sum_k (est_k - mean)^2/(p-1)
    - mean_k s_k^2)`` (Morris, 1983), the posterior mean of an estimate with
    sampling variance ``t`` is ``center + (1 - B)(estimate - center)`` with
    ``B = t / (t + tau^2)``.

    Parameters
    ----------
    estimates, variances : ndarray (p,)
        Per-prompt estimates and their sampling variances (they fix ``tau^2``).
    target_variances : ndarray, optional
        Sampling variances ``t`` of the estimates actually shrunk (e.g. one
        leave-one-out estimate per response; ``inf`` where there is none, which
        gives ``B = 1``); default ``variances``.

    Returns
    -------
    B : ndarray, shape of ``target_variances``
        Shrinkage factor in [0, 1]; all zeros when ``p < 3`` (James-Stein needs
        three or more means to dominate the raw estimates).

    Examples
    --------
    >>> est = np.array([0.2, 0.5, 0.8])
    >>> eb_shrink(est, np.full(3, 0.01)).round(4)       # tau^2 = 0.09 - 0.01 = 0.08
    array([0.1111, 0.1111, 0.1111])
    >>> eb_shrink(est, np.full(3, 0.01), np.array([0.08, np.inf]))
    array([0.5, 1. ])
    """
    t = np.asarray(variances if target_variances is None else target_variances, dtype=np.float64)
    p = estimates.shape[0]
    if p < 3:
        return np.zeros(t.shape)
    dev = estimates - estimates.mean()
    tau2 = max(0.0, float(dev @ dev) / (p - 1) - float(variances.mean()))
    tot = t + tau2
    safe = np.isfinite(t) & (tot > 0)
    return np.where(np.isinf(t), 1.0, np.where(safe, t / np.where(safe, tot, 1.0), 0.0))


@register_estimator("kae_shrink", "kae_eb")
class KAEShrink(KAE):
    """KAE estimates shrunk across prompts toward the batch mean (empirical Bayes).

    Each response's KAE baseline ``V^(g)`` (leave-one-out, as in :class:`KAE`)
    is replaced by ``m_{-k} + (1 - B_g)(V^(g) - m_{-k})`` where

    * ``m_{-k}``: mean of the other prompts' estimates ``mu_j`` in the batch
      (leaving prompt ``k`` out keeps the response's own reward out of its
      centre); ``mu_j`` is prompt ``j``'s kernel-weighted mean over its history
      and its whole current group;
    * ``B_g = t_g / (t_g + tau^2)`` (:func:`eb_shrink`) with ``t_g = sigma^2 *
      sum w^2 / (sum w)^2`` the variance of ``V^(g)`` itself (weights: the
      history's ``K(u_j)`` and ``K(0)`` for the ``G - 1`` other responses;
      ``(sum w)^2 / sum w^2`` is its effective sample size), ``tau^2`` the
      spread of the ``mu_j`` beyond their own noise, and ``sigma^2`` the pooled
      within-prompt reward variance (reliability-weighted: ``sum_k SS_k /
      sum_k (W_k - W2_k / W_k)`` over history and current groups).

    It helps where windows are thin (early training, ``G = 1``, small ``h``) and
    prompts have similar values; it hurts when prompt values are very spread
    (``tau^2`` large makes ``B`` small, so it then reverts to KAE). ``B_g``
    depends on the response's own reward only through the pooled ``sigma^2``
    (an ``O(1/n)`` effect) and ``tau^2`` (``O(1/p)``). Fewer than three
    prompts: no shrinkage. Where KAE has no estimate (``G = 1``, empty
    window) the baseline stays KAE's fallback.

    Parameters are those of :class:`KAE`.

    Examples
    --------
    >>> import numpy as np
    >>> keys, z = [0, 0, 1, 1, 2, 2], np.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    >>> KAE().compute(keys, z, step=1).baselines
    array([1., 1., 1., 0., 1., 0.])
    >>> # the spread of the 3 prompt means is within noise (tau^2 = 0): each goes fully
    >>> # to the mean of the other prompts' estimates
    >>> KAEShrink().compute(keys, z, step=1).baselines
    array([0.5 , 0.5 , 0.75, 0.75, 0.75, 0.75])
    """

    def _compute(self, batch: Batch):
        hs = self._sums(batch, ("w0", "wz", "wzz", "w2"))
        base, empty = self._nw(batch, hs)
        k0 = self.kernel.k0
        W = hs["w0"] + k0 * batch.counts
        W2 = hs["w2"] + k0 * k0 * batch.counts
        Y = hs["wz"] + k0 * batch.sums
        YY = hs["wzz"] + k0 * batch.group_sum(batch.z * batch.z)
        mu = Y / W
        ss = np.maximum(YY - W * mu * mu, 0.0)
        df = W - W2 / W
        sigma2 = float(ss.sum() / df.sum()) if df.sum() > 0 else 0.0
        inv = batch.inverse
        # Variance of each response's own leave-one-out estimate: its history and the G - 1 others.
        others = batch.counts[inv] - 1.0
        w_loo = hs["w0"][inv] + k0 * others
        w2_loo = hs["w2"][inv] + k0 * k0 * others
        target = sigma2 * w2_loo / np.where(empty, 1.0, w_loo * w_loo)
        p = batch.n_groups
        center = (mu.sum() - mu) / (p - 1) if p > 1 else mu
        B = eb_shrink(mu, sigma2 * W2 / (W * W), target)
        shrunk = center[inv] + (1.0 - B) * (base - center[inv])
        base = np.where(empty, base, shrunk)
        return self._scale(batch, batch.z - base, hs), base

