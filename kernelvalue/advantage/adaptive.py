"""KAE-auto: kernel advantage estimation whose window adapts per prompt and over time.

Registered as ``"kae_auto"``. The docstring of :class:`KAEAuto` derives the
method; the pieces are pure functions so they can be checked on their own:
:func:`lepski_select` (the window choice), :func:`propagation_critical_value`
(its critical value), :func:`dispersion_terms` (the reward-variance model) and
:func:`loo_shrinkage` (empirical Bayes across prompts, leaving each prompt out).

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator
>>> est = get_estimator("kae_auto")
>>> est.update([0, 0, 1, 1], np.array([1.0, 0.0, 1.0, 1.0]), step=1)
>>> est.compute([0, 0], np.array([1.0, 1.0]), step=2).baselines.round(3)
array([0.667, 0.667])
"""

from __future__ import annotations

import numpy as np

from .base import (
    Batch,
    StatefulEstimator,
    StateReader,
    check_bool,
    check_optional_positive_int,
    check_positive,
    drop_rows,
    grown_rows,
    key_rows,
    register_estimator,
    rows_to_evict,
)

__all__ = ["KAEAuto", "lepski_select", "propagation_critical_value", "dispersion_terms", "loo_shrinkage"]

DEFAULT_WINDOWS = tuple(float(2**k) for k in range(10))  # 1 .. 512 steps
# Critical value of the window tests, from propagation_critical_value(alpha=0.05) (2.4 at every G in
# 1..16 for the default windows; tests/test_adaptive.py recomputes it).
Z_PROPAGATION = 2.4


# --------------------------------------------------------------------------- pure pieces
def lepski_select(estimates, variances, z):
    """Sequential Lepski choice among nested windows, one per row.

    Windows are ordered from the narrowest (least biased, noisiest) to the
    widest. Window ``k`` is accepted when its estimate agrees with every
    narrower window ``j < k`` within ``z`` of that window's standard error,
    ``|est_j - est_k| <= z sqrt(var_j)``; the choice is the last window
    accepted before the first rejection. Undefined windows (NaN estimate) are
    neither tested against nor chosen.

    Parameters
    ----------
    estimates, variances : ndarray (m, H)
    z : float
        Critical value (:func:`propagation_critical_value`).

    Returns
    -------
    ndarray of int64 (m,)
        Chosen window per row; ``-1`` where no window is defined.

    Examples
    --------
    >>> est = np.array([[0.5, 0.52, 0.55, 0.9], [np.nan, 0.3, 0.3, 0.3]])
    >>> lepski_select(est, np.full((2, 4), 0.01), z=2.0)    # 0.9 is 4 s.e. from 0.5: stop before it
    array([2, 3])
    """
    # Windows on the first axis internally, so each step below is one vectorised pass over all rows.
    est = np.ascontiguousarray(np.asarray(estimates, dtype=np.float64).T)
    half = z * np.sqrt(np.asarray(variances, dtype=np.float64).T)
    H, m = est.shape
    # |est_j - est_k| <= z sd_j for every narrower j  <=>  est_k lies in the intersection of the intervals
    # est_j -/+ z sd_j, j < k: a running max of the lower ends and min of the upper ends (fmax/fmin skip
    # the NaNs of undefined windows), O(H) per row; the loop is over the H windows, not over rows
    # (ufunc.accumulate is several times slower here). A tiny absolute slack keeps exactly equal estimates
    # of noise-free rewards (sd 0) from rejecting. Comparisons with NaN are False: no test, no rejection.
    bad = np.zeros((H, m), dtype=bool)
    floor, ceil = est[0] - half[0], est[0] + half[0]
    with np.errstate(invalid="ignore"):
        for k in range(1, H):
            bad[k] = (est[k] < floor - 1e-12) | (est[k] > ceil + 1e-12)
            floor = np.fmax(floor, est[k] - half[k])
            ceil = np.fmin(ceil, est[k] + half[k])
    first_bad = np.where(bad.any(axis=0), np.argmax(bad, axis=0), H)
    ok = np.isfinite(est) & (np.arange(H)[:, None] < first_bad[None, :])
    choice = H - 1 - np.argmax(ok[::-1], axis=0)
    return np.where(ok.any(axis=0), choice, -1).astype(np.int64)


def _window_moments(G, windows, n_history):
    """Weights of the canonical design: G rewards at every past step, G - 1 other current ones."""
    lags = np.arange(1, n_history + 1, dtype=np.float64)
    rho = np.exp(-lags[:, None] / np.asarray(windows, dtype=np.float64)[None, :])  # (T, H)
    return rho, G * rho.sum(axis=0) + (G - 1), G * (rho * rho).sum(axis=0) + (G - 1)


def propagation_critical_value(alpha=0.05, G=4, windows=DEFAULT_WINDOWS, *, n_history=4096, n_sim=4000, seed=0):
    """Smallest critical value for which a drift-free history keeps the widest window.

    The propagation condition (Spokoiny, 2009; Polzehl and Spokoiny, 2006):
    when the value does not move, the adaptive choice should equal the
    widest window, so that adaptivity costs nothing where it is not needed.
    Monte Carlo under that null: a prompt observed at every step with ``G``
    rewards of unit variance (Gaussian; a rescaling of any law, the statistic
    is scale-free), ``n_history`` past steps, the estimator's windows (the
    current group alone, then each time constant of ``windows``). Returns the
    smallest ``z`` on a 0.05 grid with ``P(choice < widest) <= alpha``.

    Examples
    --------
    >>> round(propagation_critical_value(alpha=0.05, G=4, n_sim=2000), 2)   # doctest: +SKIP
    2.4
    """
    rng = np.random.default_rng(seed)
    rho, W, W2 = _window_moments(G, windows, n_history)
    hist = rng.standard_normal((n_sim, n_history)) / np.sqrt(G)  # per-step means of G rewards
    group = rng.standard_normal(n_sim) / np.sqrt(G - 1) if G > 1 else np.zeros(n_sim)
    est = (G * hist @ rho + (G - 1) * group[:, None]) / W
    var = np.broadcast_to(W2 / W**2, est.shape)
    if G > 1:
        est = np.column_stack([group, est])
        var = np.column_stack([np.full(n_sim, 1.0 / (G - 1)), var])
    widest = est.shape[1] - 1
    for z in np.arange(1.0, 6.0001, 0.05):
        if np.mean(lepski_select(est, var, z) < widest) <= alpha:
            return float(round(z, 2))
    return 6.0


def dispersion_terms(W, W2, S, Q, lo, hi):
    """Per-prompt terms of the dispersion ``phi`` in ``Var(Z | x) = phi (V - lo)(hi - V)``.

    Rewards in ``[lo, hi]`` have ``Var(Z | x) <= (V - lo)(hi - V)``
    (Bhatia-Davis), with equality for two-point rewards: ``phi = 1`` for 0/1
    rewards, ``phi < 1`` for graded ones (the quasi-binomial model). From
    weighted sums per prompt (weights ``w``: ``W = sum w``, ``W2 = sum w^2``,
    ``S = sum w Z``, ``Q = sum w Z^2``), the weighted sum of squares ``SS = Q -
    S^2 / W`` has mean ``sigma^2 (W - W2 / W)``, and ``(m - lo)(hi - m) +
    sigma^2 W2 / W^2`` is unbiased for ``(V - lo)(hi - V)``; pooled over
    prompts,

        phi = sum SS / sum [(W - W2/W)(m - lo)(hi - m) + SS W2 / W^2],

    which is exactly 1 for any 0/1 data.

    Returns
    -------
    ss, den : ndarray
        Numerator and denominator terms (0 where ``W = 0``).

    Examples
    --------
    >>> one = np.ones(1)
    >>> dispersion_terms(4 * one, 4 * one, 2 * one, 2 * one, 0.0, 1.0)   # 0/1 rewards 1, 1, 0, 0: phi = 1
    (array([1.]), array([1.]))
    >>> dispersion_terms(2 * one, 2 * one, one, 0.5 * one, 0.0, 1.0)[0]  # graded 0.5, 0.5: no spread
    array([0.])
    """
    ok = W > 0
    Wd = np.where(ok, W, 1.0)
    m = S / Wd
    ss = np.where(ok, np.maximum(Q - S * m, 0.0), 0.0)
    df = np.where(ok, W - W2 / Wd, 0.0)
    den = np.where(ok, df * (m - lo) * (hi - m) + ss * W2 / (Wd * Wd), 0.0)
    return ss, den


def loo_shrinkage(mu, ratio, bias2, valid, phi, lo, hi, prior=None):
    """Leave-one-prompt-out centre, prior variance and pooled reward variance for empirical Bayes.

    Prompt values ``V_j`` are modelled as draws with mean ``c`` and variance
    ``tau^2``; estimate ``mu_j`` has error variance ``sigma_bar^2 r_j + b_j``
    (``r_j = sum w^2 / (sum w)^2``, ``b_j`` its squared drift bias), where
    ``sigma_bar^2 = E phi (V - lo)(hi - V) = phi [(c - lo)(hi - c) - tau^2]``
    is the reward variance averaged over prompts. Then ``var(mu) = tau^2 +
    sigma_bar^2 mean(r) + mean(b)``, which solves to

        tau^2 = [var(mu) - mean(b) - phi (c - lo)(hi - c) mean(r)] / (1 - phi mean(r)),

    clipped to ``[0, (c - lo)(hi - c)]`` (no more spread than the range
    allows): the method of moments of the beta-binomial model for 0/1 rewards
    (``phi = 1``), its quasi-likelihood analogue for graded ones. Every
    quantity for prompt ``k`` comes from the *other* valid prompts, so nothing
    here depends on prompt ``k``'s rewards.

    Parameters
    ----------
    mu, ratio, bias2 : ndarray (p,)
        Per-prompt estimates, their ``sum w^2 / (sum w)^2`` and squared bias.
    valid : ndarray of bool (p,)
        Prompts with an estimate.
    phi, lo, hi : float
        Dispersion and reward range (:func:`dispersion_terms`).
    prior : ndarray (5,), optional
        ``(count, sum mu, sum mu^2, sum r, sum b)`` of earlier prompts (e.g.
        past steps' estimates, discounted), pooled with the other prompts.

    Returns
    -------
    center, tau2, sigma2 : ndarray (p,)
        ``center`` is NaN where no other prompt is valid; ``tau2`` and
        ``sigma2`` NaN where fewer than three are, or where the others' data
        cannot separate the spread of values from noise (``phi mean(r) >= 1``:
        single 0/1 rewards).

    Examples
    --------
    >>> mu = np.array([0.2, 0.4, 0.6, 0.8])
    >>> c, t, s = loo_shrinkage(mu, np.full(4, 0.1), np.zeros(4), np.ones(4, bool), 1.0, 0.0, 1.0)
    >>> c.round(3), t.round(3)   # prompt 0: others 0.4, 0.6, 0.8 -> (0.04 - 0.24 * 0.1) / (1 - 0.1)
    (array([0.6  , 0.533, 0.467, 0.4  ]), array([0.018, 0.076, 0.076, 0.018]))
    """
    v = valid.astype(np.float64)
    mu0, r0, b0 = (np.where(valid, a, 0.0) for a in (mu, ratio, bias2))
    k0, k1, k2, kr, kb = np.zeros(5) if prior is None else np.asarray(prior, dtype=np.float64)
    n = v.sum() - v + k0
    n1 = np.maximum(n, 1.0)
    center = (np.sum(mu0) - mu0 + k1) / n1
    spread = ((np.sum(mu0 * mu0) - mu0 * mu0 + k2) - n * center * center) / np.maximum(n - 1.0, 1.0)
    rbar, bbar = (np.sum(r0) - r0 + kr) / n1, (np.sum(b0) - b0 + kb) / n1
    top = np.maximum((center - lo) * (hi - center), 0.0)
    den = 1.0 - phi * rbar
    ok = (n >= 3) & (den > 0)
    tau2 = np.clip((spread - bbar - phi * top * rbar) / np.where(ok, den, 1.0), 0.0, top)
    return (np.where(n > 0, center, np.nan), np.where(ok, tau2, np.nan),
            np.where(ok, phi * (top - tau2), np.nan))  # fmt: skip


# --------------------------------------------------------------------------- state
_SUMS = ("W", "W2", "S", "D")


class _WindowBank:
    """Per-prompt exponentially weighted sums at every time constant, updated recursively.

    Row ``r`` holds, as of step ``last[r]``, for each window ``L_h`` (``rho_h =
    exp(-1/L_h)``, ``lag`` = steps before ``last``): ``W = sum rho^lag n``,
    ``W2 = sum rho^(2 lag) n`` (squared weight per reward), ``S = sum rho^lag
    sum Z``, ``D = sum rho^lag lag n`` (for the mean lag), and for the widest
    window ``Q = sum rho^lag sum Z^2``. Moving to step ``i`` multiplies by
    ``rho^(i - last)`` (and shifts every lag by ``i - last``): the exact kernel
    sums of the exponential kernel, with O(H) memory per prompt whatever the
    history's length. At most ``max_prompts`` prompts are held, the least
    recently updated forgotten first (one that returns is new again).
    """

    def __init__(self, windows, max_prompts=None):
        self.windows = np.asarray(windows, dtype=np.float64)
        self.max_prompts = max_prompts
        self._index: dict = {}
        self._keys: list = []
        H = self.windows.shape[0]
        self.W, self.W2, self.S, self.D = (np.zeros((8, H)) for _ in _SUMS)
        self.Q = np.zeros(8)
        self.last = np.zeros(8, dtype=np.int64)
        self.evicted = 0

    def __len__(self):
        return len(self._keys)

    def _arrays(self):
        return [self.W, self.W2, self.S, self.D, self.Q, self.last]

    def _set(self, arrays):
        self.W, self.W2, self.S, self.D, self.Q, self.last = arrays

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays())

    def rows(self, keys, create=False):
        """Row of each key (-1 if unknown); ``create`` first makes room, then adds the unknown keys."""
        if create and self.max_prompts is not None:
            drop = rows_to_evict(self._index, self._keys, keys, self.last[: len(self._keys)], self.max_prompts)
            if drop.size:
                self._set(drop_rows(self._index, self._keys, self._arrays(), drop))
                self.evicted += int(drop.size)
        out = key_rows(self._index, self._keys, keys, create)
        size = self.last.shape[0]
        if create and len(self._keys) > size:
            extra = grown_rows(size, len(self._keys), self.max_prompts) - size
            self._set([np.concatenate([a, np.zeros((extra,) + a.shape[1:], dtype=a.dtype)]) for a in self._arrays()])
        return out

    def at(self, rows, step):
        """Sums ``(W, W2, S, D, Q)`` at ``step`` (history only) for ``rows`` (``-1``: unknown, zeros)."""
        known = rows >= 0
        r = np.maximum(rows, 0)
        lag = np.where(known, step - self.last[r], 0).astype(np.float64)[:, None]
        f = np.exp(-lag / self.windows[None, :]) * known[:, None]
        W = self.W[r] * f
        return W, self.W2[r] * f * f, self.S[r] * f, self.D[r] * f + lag * W, self.Q[r] * f[:, -1]

    def add(self, keys, counts, sums, sumsq, step):
        rows = self.rows(keys, create=True)
        W, W2, S, D, Q = self.at(rows, step)  # new rows have zero sums: they stay zero
        self.W[rows] = W + counts[:, None]
        self.W2[rows] = W2 + counts[:, None]
        self.S[rows] = S + sums[:, None]
        self.D[rows] = D
        self.Q[rows] = Q + sumsq
        self.last[rows] = step

    def state_dict(self):
        p = len(self._keys)
        arrays = {n: getattr(self, n)[:p].copy() for n in _SUMS + ("Q", "last")}
        return {"keys": list(self._keys), "evicted": self.evicted, **arrays}

    def read_state(self, rd: StateReader, last_update: int) -> _WindowBank:
        """A new bank holding a validated saved state (this one is left alone)."""
        bank = _WindowBank(self.windows, self.max_prompts)
        keys = rd.keys("keys")
        p, H = len(keys), self.windows.shape[0]
        if self.max_prompts is not None and p > self.max_prompts:
            raise ValueError(f"{rd.what} holds {p} prompts, more than max_prompts={self.max_prompts}.")
        last = rd.array("last", (p,), integer=True, lo=1)
        if p and last.max() > last_update:
            raise ValueError(f"{rd.what}['last'] holds a step after the last update ({last_update}); the state is corrupt.")
        # Weights, squared weights, lags and squares are sums of nonnegative terms; S may have any sign.
        sums = {n: rd.array(n, (p, H), lo=None if n == "S" else 0.0) for n in _SUMS}
        Q = rd.array("Q", (p,), lo=0.0)
        size = max(8, p)
        arrays = []
        for arr in (*sums.values(), Q, last):
            full = np.zeros((size,) + arr.shape[1:], dtype=arr.dtype)
            full[:p] = arr
            arrays.append(full)
        bank._set(arrays)
        bank._keys, bank._index = keys, {k: i for i, k in enumerate(keys)}
        bank.evicted = rd.int("evicted", lo=0)
        return bank


# --------------------------------------------------------------------------- estimator
@register_estimator("kae_auto")
class KAEAuto(StatefulEstimator):
    r"""KAE whose window adapts per prompt and over time, pooled across prompts by empirical Bayes.

    **Model.** Prompt ``x`` has value ``V_t(x)`` at step ``t``; its rewards
    are independent with mean ``V_t`` and variance ``sigma^2 = phi (V_t -
    lo)(hi - V_t)`` in ``[lo, hi]`` = ``reward_range`` (``phi = 1`` exactly
    for 0/1 rewards, ``phi < 1`` for graded ones; pooled over past steps from
    the spread within groups, or for lone rewards with their prompt's past:
    :func:`dispersion_terms`). At step ``i`` a response ``g`` has its
    prompt's past rewards and the other ``G - 1`` responses of its group.

    **A bank of KAE windows.** For each time constant ``L`` of ``windows``
    (steps; default 1, 2, 4, ..., 512), the paper's leave-one-out estimate
    with the exponential kernel (its sensitivity-study kernel) in absolute
    steps, ``rho = exp(-1/L)``,

        V_L = [sum_hist rho^(i - I_j) Z_j + sum_{k != g} Z_k] / [sum_hist rho^(i - I_j) + G - 1],

    plus ``L = 0``: the other ``G - 1`` responses alone (RLOO). The kernel
    sums obey ``S_i = rho^(i - t) S_t + (new rewards)``, so the bank costs
    O(H) memory and work per prompt and step whatever the history's length
    (:class:`_WindowBank`).

    **Why the window must adapt (bias and variance).** With ``n_L = (sum
    w)^2 / sum w^2`` effective rewards and mean lag ``lambda_L = sum w lag /
    sum w``, a value drifting at ``delta`` per step gives

        MSE(V_L) = sigma^2 / n_L + delta^2 lambda_L^2,

    minimised by ``lambda ~ (sigma^2 / (G delta^2))^(1/3)``: the best window
    shrinks as the drift speeds up and grows with the reward noise, and
    ``n_L``, ``lambda_L`` differ by prompt and step (the schedule serves a
    prompt in blocks; a new prompt has no past; after an abrupt change
    everything older is biased). No fixed ``h`` fits them all; KAE's
    relative window ``i h`` even grows while the drift does not slow.

    **Choosing it.** For every response and window the MSE above is
    estimated and the smallest taken:

    * ``sigma^2 / n_L`` from the response's own weights and its prompt's
      reward variance (posterior mean of ``phi (V - lo)(hi - V)`` under a
      beta prior fitted to the other prompts, :meth:`_variance`);
    * ``delta_L^2 lambda_L^2`` with ``lambda_L`` the response's own mean lag
      and ``delta_L^2`` a drift speed pooled over prompts by forward
      validation: at every update each new reward is predicted by every
      window, and ``E (Z - V_L)^2 = sigma^2 (1 + 1/n_L) + delta_L^2
      lambda_L^2``; the excess over the noise part (``sigma^2`` pooled from
      each prediction's narrowest window, which does not lag; paired with
      the current group's prediction where there is one, so the reward's own
      noise cancels) is summed with a memory of ``drift_memory`` steps, and
      only its part beyond ``z`` standard errors is kept (no drift seen:
      ``delta = 0``, the widest window: the propagation condition below);
    * capped by a per-prompt Lepski test (:func:`lepski_select`): no window
      whose estimate leaves the ``z``-standard-error band of a narrower one,
      so a prompt whose own data show a change bigger than the pooled drift
      explains is not smoothed across it. Lepski (1991) and Goldenshluger and
      Nemirovski (1997): this attains the oracle window's rate without
      knowing ``delta``. The test runs on Anscombe's variance-stabilised scale
      (normal bands on the raw scale are far too tight for a few rewards of a
      prompt near 0 or 1; :meth:`_choose`).

    ``z = 2.4`` is fixed by the propagation condition (Spokoiny, 2009), not by
    results: with no drift the Lepski cap keeps the widest window for >= 95%
    of responses at every ``G`` (:func:`propagation_critical_value`).

    **Pooling across prompts (empirical Bayes).** The chosen estimate, with
    error variance ``t = sigma_bar^2 / n_L + delta_L^2 lambda_L^2``, is
    shrunk to the mean ``c`` of the other prompts' estimates by ``B = t / (t
    + tau^2)``; ``tau^2`` (spread of the values) and ``sigma_bar^2 = phi
    [(c - lo)(hi - c) - tau^2]`` come from the beta-binomial method of
    moments over the batch's other prompts and the past steps' estimates
    (memory ``drift_memory``; :func:`loo_shrinkage`). For 0/1 rewards this
    is the posterior mean under a beta prior: a prompt with few rewards
    moves towards the population, an easy or impossible prompt keeps its
    value once its data say so, and a prompt never seen gets ``c``.

    **Leave-one-out everywhere.** Response ``g``'s windows, variance and mean
    lag use the history and the other ``G - 1`` responses; ``c``,
    ``tau^2``, ``sigma_bar^2`` use only other prompts and past steps;
    ``phi``, ``delta`` and the prior only past steps. So the baseline does not
    depend on the response's own reward: the policy gradient stays unbiased.
    Nothing at all (``G = 1``, a lone new prompt): the global running mean
    (0 before any update), as KAE.

    Parameters
    ----------
    windows : sequence of float, optional
        Time constants in steps, increasing (default 1, 2, 4, ..., 512).
    z : float, default 2.4
        Critical value of the Lepski cap and of the drift evidence.
    drift_memory : float, default 8.0
        Memory (steps) of the pooled drift and prior estimates: the paper's
        block length J (8-10), the scale on which the schedule changes.
    shrink : bool, default True
        Empirical-Bayes pooling across prompts.
    reward_range : (float, float), default (0.0, 1.0)
        Bounds of the rewards (the variance model); rewards outside raise.
    max_prompts : int or None, default 65536
        Most prompts held; beyond it the least recently updated are forgotten
        (one that returns is new again). ``None``: no bound. Memory is
        ``O(max_prompts x len(windows))`` whatever the length of training.

    Attributes
    ----------
    window_ : ndarray (n,)
        Time constant chosen for each response of the last :meth:`compute`
        (0: the current group alone; NaN: nothing to estimate from).
    shrinkage_ : ndarray (n,)
        Its shrinkage factor ``B``.
    drift2_ : ndarray (H,)
        Pooled squared drift speed per window (0 where no drift is evident).

    Examples
    --------
    >>> import numpy as np
    >>> est = KAEAuto()
    >>> rng = np.random.default_rng(0)
    >>> for i in range(1, 41):           # 8 prompts, values jump from 0.2 to 0.8 at step 21
    ...     keys = np.repeat(np.arange(8), 4)
    ...     z = (rng.random(32) < (0.2 if i <= 20 else 0.8)).astype(float)
    ...     if i in (20, 40):
    ...         res = est.compute(keys, z, step=i)
    ...         print(i, float(np.median(est.window_)), round(float(res.baselines.mean()), 2))
    ...     est.update(keys, z, step=i)
    20 512.0 0.2
    40 8.0 0.75
    """

    def __init__(self, windows=None, z=Z_PROPAGATION, drift_memory=8.0, shrink=True, reward_range=(0.0, 1.0),
                 max_prompts=65536):  # fmt: skip
        super().__init__()
        w = np.array(DEFAULT_WINDOWS if windows is None else _numbers("windows", windows), dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0) or np.any(np.diff(w) <= 0):
            raise ValueError(f"windows must be increasing, finite time constants > 0 (steps), got {windows!r}.")
        self.windows = w
        self.z = check_positive("z", z)
        self.drift_memory = check_positive("drift_memory", drift_memory)
        self.shrink = check_bool("shrink", shrink)
        bounds = _numbers("reward_range", reward_range)
        if len(bounds) != 2 or not (np.isfinite(bounds[0]) and np.isfinite(bounds[1]) and bounds[0] < bounds[1]):
            raise ValueError(f"reward_range must be a pair (low, high), finite, low < high, got {reward_range!r}.")
        lo, hi = bounds
        self.reward_range = (lo, hi)
        self.max_prompts = check_optional_positive_int("max_prompts", max_prompts)
        self._params = {"windows": w.tolist(), "z": self.z, "drift_memory": self.drift_memory, "shrink": self.shrink,
                        "reward_range": [lo, hi], "max_prompts": self.max_prompts}  # fmt: skip
        self.bank = _WindowBank(w, self.max_prompts)
        # Pooled, discounted statistics of past steps: drift evidence per window (sum of excess errors, of
        # their squares, of squared mean lags) and the prior's moments (count, sum mu, sum mu^2, sum r, sum b).
        self._drift = np.zeros((3, w.shape[0]))
        self._phi = np.zeros(2)  # dispersion: sum SS, sum of its denominator terms
        self._prior = np.zeros(5)
        self._pooled_step = 0
        self.window_ = np.zeros(0)
        self.shrinkage_ = np.zeros(0)
        self._cache = None

    @property
    def drift2_(self) -> np.ndarray:
        num, sq, den = self._drift
        evident = np.maximum(num - self.z * np.sqrt(sq), 0.0)
        return np.where(den > 0, evident / np.where(den > 0, den, 1.0), 0.0)

    def _check_range(self, batch: Batch):
        lo, hi = self.reward_range
        if np.any(batch.z < lo) or np.any(batch.z > hi):
            raise ValueError(
                f"kae_auto got rewards outside reward_range={self.reward_range} (min {batch.z.min():.4g}, max "
                f"{batch.z.max():.4g}); build it with reward_range=(low, high) covering every reward."
            )

    # ---------------------------------------------------------------- pieces
    def _history(self, batch: Batch):
        """Past sums of the batch's prompts, the dispersion ``phi`` and the beta prior ``(c, a)``."""
        lo, hi = self.reward_range
        W, W2, S, D, Q = self.bank.at(self.bank.rows(batch.uniq), batch.step)
        num, den = self._phi
        phi = min(1.0, num / den) if den > 0 else 1.0  # the Bernoulli bound until rewards repeat
        none = np.zeros(1, dtype=bool)
        c, tau2, _ = (float(a[0]) for a in loo_shrinkage(none * 0.0, none * 0.0, none * 0.0, none, phi, lo, hi,
                                                          prior=self._prior))  # fmt: skip
        if not (np.isfinite(c) and np.isfinite(tau2)):
            c, a = 0.5 * (lo + hi), 1.0  # Jeffreys
        else:
            a = (c - lo) * (hi - c) / tau2 - 1.0 if tau2 > 0 else np.inf
        return (W, W2, S, D), Q, phi, (c, a)

    def _assess(self, hist, counts, sums, phi, prior):
        """Per row and window (column 0: the current rewards alone): estimate, ``r = sum w^2 / (sum w)^2``,
        mean lag; and the row's reward variance."""
        hW, hW2, hS, hD = hist
        m, H = hW.shape
        W, W2, S, D = (np.empty((m, H + 1)) for _ in range(4))
        W[:, 0] = W2[:, 0] = counts
        W[:, 1:] = hW + counts[:, None]
        W2[:, 1:] = hW2 + counts[:, None]
        S[:, 0] = sums
        S[:, 1:] = hS + sums[:, None]
        D[:, 0] = 0.0
        D[:, 1:] = hD
        defined = W > 0
        Wd = np.where(defined, W, 1.0)
        est = np.where(defined, S / Wd, np.nan)
        ratio = np.where(defined, W2 / (Wd * Wd), np.inf)
        lag = np.where(defined, D / Wd, 0.0)
        return est, ratio, lag, self._variance(est[:, -1], ratio[:, -1], phi, prior)

    def _variance(self, m, ratio, phi, prior):
        """Posterior mean of ``phi (V - lo)(hi - V)`` given the widest window's estimate ``m``.

        Beta prior with mean ``c`` and strength ``a`` (``_history``), the window's ``n = 1 / r``
        effective rewards: ``m' = (n m + a c) / (n + a)`` and ``E[(V - lo)(hi - V) | data] =
        (m' - lo)(hi - m') (n + a) / (n + a + 1)``. Unbiased on average over prompts; the plug-in
        ``(m - lo)(hi - m)`` is biased by ``-Var(m)``, and is 0 for a prompt seen twice at 0.
        """
        lo, hi = self.reward_range
        c, a = prior
        n = np.where(np.isfinite(m), 1.0 / ratio, 0.0)
        if np.isinf(a):  # tau^2 = 0: every prompt has the value c
            return np.full(n.shape, phi * (c - lo) * (hi - c))
        tot = n + a  # 0 only with no data and a = 0 (tau^2 at its maximum): then the prior mean
        post = np.where(tot > 0, (n * np.nan_to_num(m) + a * c) / np.where(tot > 0, tot, 1.0), c)
        return phi * (post - lo) * (hi - post) * tot / (tot + 1.0)

    def _choose(self, est, ratio, lag, sigma2, phi):
        """Window per row: least estimated MSE, capped by the Lepski test. Returns the estimate, its ``r``,
        its squared drift bias and the window index (-1: none).

        The Lepski test runs on Anscombe's (1948) variance-stabilised scale: an estimate ``m`` (range
        ``[0, 1]`` after rescaling) from ``n = 1 / (phi r)`` binomial-equivalent rewards becomes
        ``asin(sqrt((n m + 3/8) / (n + 3/4)))`` with variance ``1 / (4 n + 2)`` whatever ``V``. On the raw
        scale the normal bands of a narrow window beside a value near 0 or 1 are far too tight (three
        rewards 1, 1, 0 of a prompt at 0.99 would look like a change); the plain arcsine without the 3/8
        over-stretches a few rewards all at 0 or 1 (0 of 3 at V = 0.5 is common, not a change)."""
        defined = np.isfinite(est)  # ratio is inf where a window has no data
        bias2 = np.concatenate([[0.0], self.drift2_])[None, :] * lag * lag
        with np.errstate(invalid="ignore"):  # 0 * inf where sigma^2 = 0: undefined anyway
            risk = np.where(defined, sigma2[:, None] * ratio + bias2, np.inf)
        k = np.argmin(risk, axis=1)
        lo, hi = self.reward_range
        n = 1.0 / (max(phi, 1e-12) * ratio)
        m = np.clip((est - lo) / (hi - lo), 0.0, 1.0)
        stable = np.arcsin(np.sqrt((n * m + 0.375) / (n + 0.75)))
        cap = lepski_select(stable, 1.0 / (4.0 * n + 2.0), self.z)
        k = np.where(defined.any(axis=1), np.minimum(k, cap), -1)
        r, kk = np.arange(est.shape[0]), np.maximum(k, 0)
        has = k >= 0
        return (np.where(has, est[r, kk], np.nan), np.where(has, ratio[r, kk], np.inf),
                np.where(has, bias2[r, kk], 0.0), k)  # fmt: skip

    def _per_response(self, batch: Batch, hist, phi, prior):
        """Leave-one-out windows of every response: its history plus the other ``G - 1`` responses."""
        inv = batch.inverse
        return self._assess(tuple(a[inv] for a in hist), batch.counts[inv] - 1.0, batch.sums[inv] - batch.z,
                            phi, prior)  # fmt: skip

    def _analysis(self, batch: Batch):
        """Everything ``compute`` and ``update`` both need from the state at this step: the batch's past
        sums, ``phi``, the prior, each response's windows and each prompt's chosen estimate.

        ``update`` normally follows ``compute`` on the same batch, and ``compute`` changes nothing it
        reads, so the analysis is kept for that one call (and checked to be for the same batch)."""
        c = self._cache
        if (c is not None and c[0] == batch.step and c[1] == batch.uniq and np.array_equal(c[2], batch.inverse)
                and np.array_equal(c[3], batch.z)):  # fmt: skip
            return c[4]
        hist, Q, phi, prior = self._history(batch)
        responses = self._per_response(batch, hist, phi, prior)
        prompts = self._choose(*self._assess(hist, batch.counts, batch.sums, phi, prior), phi)
        out = (phi, hist, Q, responses, prompts)
        self._cache = (batch.step, batch.uniq, batch.inverse, batch.z, out)
        return out

    # ---------------------------------------------------------------- protocol
    def _compute(self, batch: Batch):
        self._check_range(batch)
        phi, _, _, responses, prompts = self._analysis(batch)
        v, r, b2, k = self._choose(*responses, phi)
        self.window_ = np.where(k > 0, self.windows[np.maximum(k - 1, 0)], np.where(k == 0, 0.0, np.nan))
        B = np.zeros(v.shape)
        base = v
        if self.shrink:
            # Per prompt with its whole group: the estimates the other prompts are shrunk towards.
            mu, mr, mb2, _ = prompts
            center, tau2, sigma2_bar = loo_shrinkage(mu, mr, mb2, np.isfinite(mu), phi, *self.reward_range,
                                                     prior=self._prior)  # fmt: skip
            inv = batch.inverse
            c, t2 = center[inv], tau2[inv]
            own, pooled = np.isfinite(v), np.isfinite(t2)
            t = np.where(own & pooled, sigma2_bar[inv] * np.where(own, r, 0.0) + b2, 0.0)
            tot = t + np.where(pooled, t2, 0.0)
            B = np.where(own, np.where(pooled & (tot > 0), t / np.where(tot > 0, tot, 1.0), 0.0), 1.0)
            shrunk = c + (1.0 - B) * (np.nan_to_num(v) - c)
            base = np.where(np.isfinite(shrunk), shrunk, v)
        base = np.where(np.isfinite(base), base, self.global_mean)
        self.shrinkage_ = B
        return batch.z - base, base

    def _update(self, batch: Batch) -> None:
        self._check_range(batch)
        _, hist, Q, (est, ratio, lag, _), (mu, mr, mb2, _) = self._analysis(batch)
        decay = np.exp(-(batch.step - self._pooled_step) / self.drift_memory)
        # Forward validation of every window on the rewards with a past: E (Z - V_L)^2 = sigma^2 (1 + r_L)
        # + delta_L^2 lambda_L^2, sigma^2 pooled from each prediction's narrowest window (the current group,
        # else the last steps; they do not lag), not from a model of V, which drift would bias. Where the
        # current group exists it is an unbiased reference: pairing with it, E[(Z - V_L)^2 - (Z - V_0)^2] =
        # sigma^2 (r_L - r_0) + delta_L^2 lambda_L^2, and the reward's own noise cancels.
        rows = np.flatnonzero(np.isfinite(est[:, 1:]).all(axis=1))
        new = np.zeros_like(self._drift)
        if rows.size:
            e, r, l2 = est[rows], ratio[rows], lag[rows] ** 2
            err2 = (batch.z[rows, None] - e) ** 2
            paired = np.isfinite(e[:, 0])
            ref = np.where(paired, 0, 1)
            pick = np.arange(rows.size)
            s2 = err2[pick, ref].sum() / (1.0 + r[pick, ref]).sum()
            e_ref = np.where(paired, err2[:, 0], s2)[:, None]
            r_ref = np.where(paired, r[:, 0], 0.0)[:, None]
            excess = err2[:, 1:] - e_ref - s2 * (r[:, 1:] - r_ref)
            new = np.stack([excess.sum(axis=0), (excess * excess).sum(axis=0), l2[:, 1:].sum(axis=0)])
        drift = np.array([decay, decay * decay, decay])[:, None] * self._drift + new
        # Dispersion: a group of two or more from its own spread (no drift within a step); a lone reward
        # with its prompt's past (widest window).
        lo, hi = self.reward_range
        n, ss, own = batch.counts, batch.group_sum(batch.z * batch.z), batch.counts >= 2
        W, W2, S = (np.where(own, 0.0, a[:, -1]) for a in hist[:3])
        terms = dispersion_terms(W + n, W2 + n, S + batch.sums, np.where(own, 0.0, Q) + ss, lo, hi)
        phi = decay * self._phi + np.array([terms[0].sum(), terms[1].sum()])
        ok = np.isfinite(mu)
        mu, mr, mb2 = mu[ok], mr[ok], mb2[ok]
        prior = decay * self._prior + np.array([mu.size, mu.sum(), mu @ mu, mr.sum(), mb2.sum()])
        # The bank first: if the step's prompts exceed max_prompts it raises before changing anything.
        self.bank.add(batch.uniq, batch.counts, batch.sums, ss, batch.step)
        self._drift, self._phi, self._prior, self._pooled_step, self._cache = drift, phi, prior, batch.step, None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["bank"] = self.bank.state_dict()
        state["pooled"] = {"drift": self._drift.copy(), "prior": self._prior.copy(), "phi": self._phi.copy(),
                           "step": self._pooled_step}  # fmt: skip
        return state

    def _read_state(self, reader: StateReader) -> dict:
        staged = super()._read_state(reader)
        last_update = staged["_last_update"]
        staged["bank"] = self.bank.read_state(reader.sub("bank"), last_update)
        pooled = reader.sub("pooled")
        H = self.windows.shape[0]
        drift = pooled.array("drift", (3, H))
        if np.any(drift[1:] < 0):  # sums of squares and of squared lags
            raise ValueError("state_dict['pooled']['drift'] holds a negative sum of squares; the state is corrupt.")
        prior = pooled.array("prior", (5,))
        if np.any(prior[[0, 2, 3, 4]] < 0):  # count, sum mu^2, sum r, sum b
            raise ValueError("state_dict['pooled']['prior'] holds a negative count or sum of squares; the state is corrupt.")
        staged.update(_drift=drift, _prior=prior, _phi=pooled.array("phi", (2,), lo=0.0),
                      _pooled_step=pooled.int("step", lo=0, hi=last_update), _cache=None)  # fmt: skip
        return staged


def _numbers(name, value) -> list:
    """A flat sequence of real numbers as floats, else a TypeError naming the option."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {value!r}.")
    out = []
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a sequence of numbers, got {value!r}.")
        out.append(float(v))
    return out
