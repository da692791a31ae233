"""Synthetic contextual bandits whose value function is known exactly.

A :class:`SoftmaxBandit` has ``P`` prompts ("contexts") and ``A`` actions
("responses") per prompt. Action ``a`` of prompt ``x`` pays a reward with mean
``mu(x, a)`` (Bernoulli, like 0/1 verifiable rewards; Beta, a graded reward in
[0, 1] such as partial credit; or Gaussian). The policy is
a softmax over logits ``theta[x, :]``, so at every step the true value

    V(x) = sum_a pi(a | x) mu(x, a)

and the exact policy gradient ``dV(x)/dtheta[x, a] = pi(a|x) (mu(x, a) - V(x))``
are available in closed form. That makes the bandit a laboratory for
advantage estimators (:mod:`kernelvalue.advantage`): their baselines can be
scored against the true ``V`` and their policy-gradient estimates against the
exact gradient, step by step.

Two ways to move the policy:

* **policy gradient** (:func:`simulate` / :func:`run_comparison` with
  ``driver=``): every step, ``G`` responses per served prompt are sampled, one
  chosen estimator's advantages drive a gradient-ascent step on ``theta``, and
  *every* estimator is evaluated on the same samples (paired comparisons);
* **prescribed drift** (``drift=``, e.g. :class:`LogitDrift`): ``theta`` follows
  a smooth, deterministic path of the step index, so ``V_i(x)`` is Lipschitz in
  ``i`` with a known constant -- the setting of the paper's rate theorem.

Everything is vectorised over prompts and responses; randomness comes from
``numpy.random.default_rng`` seeds.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.bandits import SoftmaxBandit
>>> bandit = SoftmaxBandit(np.array([[0.2, 0.8]]), theta=np.array([[0.0, 0.0]]))
>>> float(bandit.values()[0])          # V = 0.5 * 0.2 + 0.5 * 0.8
0.5
>>> bandit.exact_gradient(np.array([0])).round(3)   # pi * (mu - V)
array([[-0.15,  0.15]])
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._array import to_numpy
from .advantage.base import check_positive_int
from .kernels import get_kernel

__all__ = [
    "SoftmaxBandit",
    "LogitDrift",
    "RewardShift",
    "Sample",
    "StepRecord",
    "softmax",
    "make_estimators",
    "simulate",
    "run_comparison",
    "summarize",
    "value_bias_variance",
    "kae_value_moments",
    "Scenario",
    "SCENARIOS",
    "run_suite",
    "suite_summary",
    "compare_on_suite",
]

_REWARDS = ("bernoulli", "beta", "gaussian")


def softmax(theta: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a ``(..., A)`` logit array (max-shifted, so no overflow).

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    z = np.asarray(theta, dtype=float)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Sample:
    """Responses drawn at one step: one entry per response.

    Attributes
    ----------
    keys : ndarray of int, shape (n,)
        Prompt id of each response (responses sharing a key form a group).
    actions : ndarray of int, shape (n,)
        Sampled action.
    rewards : ndarray of float, shape (n,)
        Observed reward.
    values : ndarray of float, shape (n,)
        True value ``V(x)`` of the response's prompt under the current policy.
    """

    keys: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    values: np.ndarray


class SoftmaxBandit:
    """Contextual bandit with a softmax policy and exactly known values.

    Parameters
    ----------
    means : array-like, shape (P, A)
        Mean reward ``mu(x, a)``. For Bernoulli and Beta rewards every entry must
        lie in ``[0, 1]``.
    theta : array-like, shape (P, A), optional
        Initial logits; zeros (uniform policy) by default. Copied.
    reward : {"bernoulli", "beta", "gaussian"}
        Reward law. Beta rewards (graded, bounded in [0, 1]) are
        ``Beta(kappa mu, kappa (1 - mu))`` with ``kappa = concentration``: mean
        ``mu``, variance ``mu (1 - mu) / (kappa + 1)`` (a point mass at 0 or 1
        where ``mu`` is 0 or 1). Gaussian rewards are ``mu(x, a) + noise_std * N(0, 1)``.
    noise_std : float
        Standard deviation of the Gaussian reward noise (Gaussian law only).
    concentration : float
        ``kappa`` of the Beta law (Beta law only); ``kappa -> 0`` approaches
        Bernoulli rewards, ``kappa -> inf`` deterministic ones.

    Examples
    --------
    >>> bandit = SoftmaxBandit.random(3, 4, seed=0)
    >>> bandit.n_prompts, bandit.n_actions
    (3, 4)
    >>> s = bandit.sample(np.array([0, 2]), G=5, rng=np.random.default_rng(1))
    >>> s.keys.tolist()
    [0, 0, 0, 0, 0, 2, 2, 2, 2, 2]
    >>> bool(np.all((s.rewards == 0) | (s.rewards == 1)))
    True
    """

    def __init__(
        self, means, theta=None, *, reward: str = "bernoulli", noise_std: float = 0.5, concentration: float = 2.0
    ):
        if reward not in _REWARDS:
            raise ValueError(f"reward={reward!r} is unknown; choose one of {_REWARDS}.")
        if not (np.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}.")
        if not (np.isfinite(concentration) and concentration > 0):
            raise ValueError(f"concentration must be finite and > 0, got {concentration!r}.")
        self.reward = reward
        self.noise_std = float(noise_std)
        self.concentration = float(concentration)
        self.means = self._check_means(means)
        self.theta = np.zeros_like(self.means) if theta is None else self._check_theta(theta)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def random(
        cls,
        n_prompts: int,
        n_actions: int,
        *,
        difficulty_scale: float = 2.0,
        action_scale: float = 1.5,
        theta_scale: float = 0.0,
        reward: str = "bernoulli",
        noise_std: float = 0.5,
        concentration: float = 2.0,
        seed=None,
    ) -> SoftmaxBandit:
        """A random bandit with prompts of varied difficulty.

        ``mu(x, a) = sigmoid(d_x + c_{x,a})`` with prompt difficulty
        ``d_x ~ N(0, difficulty_scale^2)`` and action effects
        ``c_{x,a} ~ N(0, action_scale^2)``: a large ``difficulty_scale`` spreads
        the prompt values over ``(0, 1)`` (as for real RLVR prompts, some easy
        and some hard), which is what makes a batch-global baseline
        (REINFORCE++) poor. Initial logits are ``N(0, theta_scale^2)``.

        Examples
        --------
        >>> b = SoftmaxBandit.random(100, 4, seed=0)
        >>> bool(b.values().std() > 0.2)
        True
        """
        n_prompts = check_positive_int("n_prompts", n_prompts)
        n_actions = check_positive_int("n_actions", n_actions)
        rng = np.random.default_rng(seed)
        d = rng.normal(0.0, difficulty_scale, size=(n_prompts, 1))
        c = rng.normal(0.0, action_scale, size=(n_prompts, n_actions))
        means = 1.0 / (1.0 + np.exp(-(d + c)))
        theta = rng.normal(0.0, theta_scale, size=(n_prompts, n_actions)) if theta_scale > 0 else None
        return cls(means, theta, reward=reward, noise_std=noise_std, concentration=concentration)

    def replicate(self, n_replicates: int) -> SoftmaxBandit:
        """Stack ``n_replicates`` independent copies of every prompt.

        Prompt ``r * P + x`` of the result is replicate ``r`` of prompt ``x``:
        same means and logits, independent rewards. Averages over replicates
        give the bias and variance of an estimator at a fixed prompt (see
        :func:`value_bias_variance`).

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.1, 0.9]])).replicate(3)
        >>> b.means.shape
        (3, 2)
        """
        n_replicates = check_positive_int("n_replicates", n_replicates)
        return SoftmaxBandit(
            np.tile(self.means, (n_replicates, 1)), np.tile(self.theta, (n_replicates, 1)), **self._law()
        )

    def copy(self) -> SoftmaxBandit:
        """A deep copy (independent logits)."""
        return copy.deepcopy(self)

    @property
    def n_prompts(self) -> int:
        return self.means.shape[0]

    @property
    def n_actions(self) -> int:
        return self.means.shape[1]

    def set_theta(self, theta) -> None:
        """Replace the logits (validated, copied)."""
        self.theta = self._check_theta(theta)

    def set_means(self, means) -> None:
        """Replace the reward table ``mu`` (validated, copied; same shape), e.g. for an abrupt change."""
        means = self._check_means(means)
        if means.shape != self.means.shape:
            raise ValueError(f"means must keep the shape {self.means.shape}, got {means.shape}.")
        self.means = means

    def _law(self) -> dict:
        """The reward-law keywords, to build a bandit with the same law."""
        return {"reward": self.reward, "noise_std": self.noise_std, "concentration": self.concentration}

    # ------------------------------------------------------------ exact maths
    def probs(self, prompts=None) -> np.ndarray:
        """Policy ``pi(.|x)``, shape ``(n, A)`` (all prompts when ``prompts`` is None)."""
        return softmax(self.theta if prompts is None else self.theta[self._check_prompts(prompts)])

    def values(self, prompts=None) -> np.ndarray:
        """Exact value ``V(x) = sum_a pi(a|x) mu(x, a)``, shape ``(n,)``.

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.0, 1.0], [0.5, 0.5]]))
        >>> b.values().tolist()
        [0.5, 0.5]
        """
        idx = slice(None) if prompts is None else self._check_prompts(prompts)
        return np.einsum("na,na->n", softmax(self.theta[idx]), self.means[idx])

    def objective(self, prompts=None) -> float:
        """``J = mean over the distinct served prompts of V(x)``."""
        idx = np.arange(self.n_prompts) if prompts is None else np.unique(self._check_prompts(prompts))
        return float(self.values(idx).mean())

    def reward_variance(self, prompts=None) -> np.ndarray:
        """Exact ``Var(Z | x)`` under the current policy, shape ``(n,)``.

        ``E_pi[Var(Z | a)] + Var_pi(mu)``. Bernoulli: ``V (1 - V)``; Beta:
        ``E_pi[mu (1 - mu)] / (kappa + 1) + Var_pi(mu)``; Gaussian:
        ``noise_std^2 + Var_pi(mu)``.

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.5, 0.5]]), reward="beta", concentration=3.0)
        >>> b.reward_variance().tolist()    # 0.25 / 4
        [0.0625]
        """
        idx = slice(None) if prompts is None else self._check_prompts(prompts)
        p, mu = softmax(self.theta[idx]), self.means[idx]
        v = np.einsum("na,na->n", p, mu)
        between = np.einsum("na,na->n", p, mu**2) - v**2
        if self.reward == "bernoulli":
            return v * (1.0 - v)
        if self.reward == "beta":
            return np.einsum("na,na->n", p, mu * (1.0 - mu)) / (self.concentration + 1.0) + between
        return self.noise_std**2 + between

    def exact_gradient(self, prompts=None) -> np.ndarray:
        """Exact gradient of ``J = mean_x V(x)`` (distinct served prompts) w.r.t. ``theta``.

        Returns a dense ``(P, A)`` array whose unserved rows are zero:
        ``dJ/dtheta[x, a] = pi(a|x) (mu(x, a) - V(x)) / n_served``.

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.0, 1.0], [0.3, 0.3]]))
        >>> b.exact_gradient(np.array([0, 1])).tolist()
        [[-0.125, 0.125], [0.0, 0.0]]
        """
        idx = np.arange(self.n_prompts) if prompts is None else np.unique(self._check_prompts(prompts))
        p, mu = softmax(self.theta[idx]), self.means[idx]
        v = np.einsum("na,na->n", p, mu)
        grad = np.zeros_like(self.theta)
        grad[idx] = p * (mu - v[:, None]) / idx.size
        return grad

    def gradient_estimate(self, keys, actions, advantages) -> np.ndarray:
        """Policy-gradient estimate of :meth:`exact_gradient` from sampled responses.

        ``g = (1/n) sum_x (1/G_x) sum_{g in group x} A_g grad log pi(a_g | x)``
        with the closed form ``grad_theta[x] log pi(a|x) = e_a - pi(.|x)``;
        ``n`` is the number of distinct keys and ``G_x`` the size of group
        ``x``. With a baseline that does not depend on the response's own
        reward (oracle, leave-one-out, history) this is unbiased.

        Parameters
        ----------
        keys, actions : array-like of int, shape (m,)
        advantages : array-like of float, shape (m,)

        Returns
        -------
        ndarray, shape (P, A)

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.0, 1.0]]))
        >>> b.gradient_estimate([0, 0], [1, 0], [0.5, -0.5]).tolist()
        [[-0.25, 0.25]]
        """
        return _gradient_estimate(self.theta, self._check_prompts(keys), actions, advantages)

    def value_path(self, drift, n_steps: int):
        """True values and reward variances along a prescribed drift, steps ``1..n_steps``.

        Returns
        -------
        values, variances : ndarray, shape (P, n_steps)
            Column ``j - 1`` holds ``V_j(x)`` and ``Var(Z | x)`` at step ``j``
            (inputs to :func:`kae_value_moments`). The bandit's own logits are
            left unchanged.

        Examples
        --------
        >>> b = SoftmaxBandit(np.array([[0.0, 1.0]]))
        >>> d = LogitDrift(np.log([[0.9, 0.1]]), np.log([[0.1, 0.9]]), horizon=4, interpolate="probs")
        >>> b.value_path(d, 4)[0].round(2).tolist()
        [[0.3, 0.5, 0.7, 0.9]]
        """
        n_steps = check_positive_int("n_steps", n_steps)
        theta = np.stack([np.asarray(drift(j), dtype=float) for j in range(1, n_steps + 1)], axis=1)
        if theta.shape != (self.n_prompts, n_steps, self.n_actions):
            raise ValueError(f"drift(step) must return ({self.n_prompts}, {self.n_actions}) logits.")
        probe = SoftmaxBandit(np.repeat(self.means, n_steps, axis=0), theta.reshape(-1, self.n_actions), **self._law())
        shape = (self.n_prompts, n_steps)
        return probe.values().reshape(shape), probe.reward_variance().reshape(shape)

    # --------------------------------------------------------------- sampling
    def sample(self, prompts, G: int, rng=None) -> Sample:
        """Draw ``G`` responses for each served prompt (vectorised).

        Parameters
        ----------
        prompts : array-like of int, shape (n,)
        G : int
            Responses per prompt.
        rng : numpy Generator or seed, optional

        Returns
        -------
        Sample
            Arrays of length ``n * G``, grouped by prompt in the order of
            ``prompts``.
        """
        prompts = self._check_prompts(prompts)
        G = check_positive_int("G", G)
        rng = np.random.default_rng(rng)
        p = softmax(self.theta[prompts])
        cdf = np.cumsum(p, axis=1)
        u = rng.random((prompts.size, G))
        # Inverse-CDF draw of all responses at once; the clip guards the
        # cdf[-1] = 1 - eps rounding case.
        actions = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), self.n_actions - 1).ravel()
        keys = np.repeat(prompts, G)
        mu = self.means[keys, actions]
        if self.reward == "bernoulli":
            rewards = (rng.random(mu.shape) < mu).astype(float)
        elif self.reward == "beta":
            # Beta(kappa mu, kappa (1 - mu)); mu at 0 or 1 is the point mass there (numpy needs a, b > 0).
            inner = (mu > 0) & (mu < 1)
            m = np.where(inner, mu, 0.5)
            rewards = np.where(inner, rng.beta(self.concentration * m, self.concentration * (1.0 - m)), mu)
        else:
            rewards = mu + self.noise_std * rng.standard_normal(mu.shape)
        values = np.repeat(np.einsum("na,na->n", p, self.means[prompts]), G)
        return Sample(keys, actions, rewards, values)

    def policy_step(self, keys, actions, advantages, lr: float) -> None:
        """One gradient-ascent step on ``theta`` from sampled advantages.

        ``lr`` multiplies the *per-prompt* gradient estimate (that of ``V(x)``,
        i.e. ``n_served`` times the row of :meth:`gradient_estimate`), so its
        meaning does not depend on how many prompts a step serves.
        """
        n = np.unique(np.asarray(keys)).size
        self.theta = self.theta + float(lr) * n * self.gradient_estimate(keys, actions, advantages)

    # -------------------------------------------------------------- checking
    def _check_means(self, means) -> np.ndarray:
        means = np.array(means, dtype=float)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 2:
            raise ValueError(
                f"means must be a (P, A) array with P >= 1 prompts and A >= 2 actions, got shape {means.shape}."
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means contains NaN or inf; pass finite mean rewards.")
        if self.reward != "gaussian" and (means.min() < 0 or means.max() > 1):
            raise ValueError(
                f"{self.reward.capitalize()} means must lie in [0, 1]; rescale them or use reward='gaussian'."
            )
        return means

    def _check_theta(self, theta) -> np.ndarray:
        theta = np.array(theta, dtype=float)
        if theta.shape != self.means.shape:
            raise ValueError(f"theta must have the shape of means {self.means.shape}, got {theta.shape}.")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta contains NaN or inf; the policy step diverged (lower lr).")
        return theta

    def _check_prompts(self, prompts) -> np.ndarray:
        prompts = np.asarray(prompts)
        if prompts.ndim != 1:
            prompts = prompts.reshape(-1)
        if prompts.size and not np.issubdtype(prompts.dtype, np.integer):
            raise TypeError(f"prompt ids must be integers, got dtype {prompts.dtype}.")
        prompts = prompts.astype(np.intp, copy=False)
        if prompts.size and (prompts.min() < 0 or prompts.max() >= self.n_prompts):
            raise ValueError(f"prompt ids must lie in [0, {self.n_prompts}); got values outside.")
        return prompts


@dataclass(frozen=True)
class LogitDrift:
    """A prescribed smooth path of the policy over training steps.

    With ``s = s(min(i / horizon, 1))``, where ``s(t) = t``
    (``shape="linear"``) or ``s(t) = (1 - cos(pi t)) / 2`` (``shape="cosine"``,
    zero speed at both ends):

    - ``interpolate="logits"``: ``theta(i) = start + (end - start) * s``;
      ``V_i(x)`` is Lipschitz in ``i`` with constant at most
      ``max|end - start| * max|s'| / horizon`` (Bernoulli rewards) but curved
      (the softmax saturates);
    - ``interpolate="probs"``: ``pi_i = (1 - s) softmax(start) + s softmax(end)``
      and ``theta(i) = log pi_i``; then ``V_i(x)`` is *exactly* affine in ``s``,
      so with ``shape="linear"`` the drift bias of a one-sided smoother is
      exactly first order in the window, the textbook setting of the
      ``N^(-2/3)`` rate.

    Parameters
    ----------
    start, end : array-like, shape (P, A)
        Logits at the two ends.
    horizon : float
        Steps the path takes to go from ``start`` to ``end``.
    shape : {"linear", "cosine"}
    interpolate : {"logits", "probs"}

    Examples
    --------
    >>> d = LogitDrift(np.zeros((1, 2)), np.array([[0.0, 2.0]]), horizon=4)
    >>> d(2).tolist(), d(10).tolist()
    ([[0.0, 1.0]], [[0.0, 2.0]])
    """

    start: np.ndarray
    end: np.ndarray
    horizon: float
    shape: str = "linear"
    interpolate: str = "logits"

    def __post_init__(self):
        start, end = np.array(self.start, dtype=float), np.array(self.end, dtype=float)
        if start.shape != end.shape or start.ndim != 2:
            raise ValueError(f"start and end must be (P, A) arrays of one shape, got {start.shape} and {end.shape}.")
        if not (np.isfinite(self.horizon) and self.horizon > 0):
            raise ValueError(f"horizon must be a positive number of steps, got {self.horizon!r}.")
        if self.shape not in ("linear", "cosine"):
            raise ValueError(f"shape={self.shape!r} is unknown; choose 'linear' or 'cosine'.")
        if self.interpolate not in ("logits", "probs"):
            raise ValueError(f"interpolate={self.interpolate!r} is unknown; choose 'logits' or 'probs'.")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def random(
        cls,
        bandit: SoftmaxBandit,
        *,
        scale: float = 2.0,
        horizon: float,
        shape: str = "linear",
        interpolate: str = "logits",
        seed=None,
    ):
        """A drift from ``bandit.theta`` towards ``bandit.theta + N(0, scale^2)`` logits."""
        rng = np.random.default_rng(seed)
        end = bandit.theta + rng.normal(0.0, scale, bandit.theta.shape)
        return cls(bandit.theta.copy(), end, horizon, shape, interpolate)

    def __call__(self, step) -> np.ndarray:
        t = min(max(float(step) / self.horizon, 0.0), 1.0)
        s = t if self.shape == "linear" else 0.5 * (1.0 - np.cos(np.pi * t))
        if self.interpolate == "logits":
            return self.start + (self.end - self.start) * s
        return np.log((1.0 - s) * softmax(self.start) + s * softmax(self.end))


@dataclass(frozen=True)
class RewardShift:
    """An abrupt change of the reward table: ``before`` until step ``at - 1``, ``after`` from step ``at``.

    Pass it as ``reward_path=`` to :func:`simulate`: every prompt's value jumps at
    step ``at`` (a new grader, a changed task mix) while the policy path is
    whatever ``drift``/``driver`` makes it.

    Examples
    --------
    >>> shift = RewardShift(np.zeros((1, 2)), np.ones((1, 2)), at=3)
    >>> shift(2).tolist(), shift(3).tolist()
    ([[0.0, 0.0]], [[1.0, 1.0]])
    """

    before: np.ndarray
    after: np.ndarray
    at: int

    def __post_init__(self):
        before, after = np.array(self.before, dtype=float), np.array(self.after, dtype=float)
        if before.shape != after.shape or before.ndim != 2:
            raise ValueError(f"before and after must be (P, A) arrays of one shape, got {before.shape} and {after.shape}.")
        object.__setattr__(self, "before", before)
        object.__setattr__(self, "after", after)
        object.__setattr__(self, "at", check_positive_int("at", self.at))

    def __call__(self, step) -> np.ndarray:
        return self.after if step >= self.at else self.before


# ---------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------


def make_estimators(spec) -> dict:
    """Build ``{label: estimator}`` from names, ``(name, kwargs)`` pairs or objects.

    Parameters
    ----------
    spec : str, iterable of str, or mapping
        A name, a list of names (label = name), or a mapping ``label ->`` a
        name, an estimator object (anything with ``compute``/``update``), a
        ``(name, kwargs)`` tuple, or a dict with a ``"name"`` entry plus kwargs.

    Examples
    --------
    >>> ests = make_estimators({"kae_h0.2": ("kae", {"bandwidth": 0.2}), "rloo": "rloo"})
    >>> sorted(ests), ests["kae_h0.2"].bandwidth
    (['kae_h0.2', 'rloo'], 0.2)

    Estimator objects are used as they are, so their state carries over from
    one run to the next; pass names for fresh estimators.
    """

    def get_estimator(name, **kw):
        # Imported on demand so the bandit itself works without the advantage package.
        from kernelvalue.advantage import get_estimator as get

        return get(name, **kw)

    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, Mapping):
        spec = {name: name for name in spec}
    out = {}
    for label, item in spec.items():
        if isinstance(item, str):
            out[label] = get_estimator(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            out[label] = get_estimator(item[0], **dict(item[1]))
        elif isinstance(item, Mapping):
            kw = dict(item)
            if "name" not in kw:
                raise ValueError(f"estimator spec for {label!r} is a dict without a 'name' entry: {item!r}.")
            out[label] = get_estimator(kw.pop("name"), **kw)
        elif hasattr(item, "compute") and hasattr(item, "update"):
            out[label] = item
        else:
            raise TypeError(
                f"estimator spec for {label!r} must be a name, (name, kwargs), a dict with 'name', "
                f"or an estimator object; got {type(item).__name__}."
            )
    if not out:
        raise ValueError("estimators is empty; pass at least one estimator name.")
    return out


@dataclass
class StepRecord:
    """What happened at one step of :func:`simulate`.

    Attributes
    ----------
    step : int
        Training step ``i`` (1-based), the value passed to ``compute``.
    prompts : ndarray of int
        Served prompt ids.
    sample : Sample
        The responses all estimators saw.
    exact_gradient : ndarray (P, A)
        Exact gradient of ``J`` for the served prompts (before the update).
    theta : ndarray (P, A)
        The logits the responses were sampled under.
    results : dict
        ``label -> AdvantageResult`` for the evaluated estimators (all of them
        on evaluation steps; only the driver otherwise).
    """

    step: int
    prompts: np.ndarray
    sample: Sample
    exact_gradient: np.ndarray
    theta: np.ndarray
    results: dict = field(default_factory=dict)

    def gradient_estimate(self, advantages) -> np.ndarray:
        """Policy-gradient estimate of ``exact_gradient`` from ``advantages`` of this step's sample."""
        return _gradient_estimate(self.theta, self.sample.keys, self.sample.actions, to_numpy(advantages))


def simulate(
    bandit: SoftmaxBandit,
    estimators,
    *,
    n_steps: int,
    G: int,
    prompts_per_step: int | None = None,
    J: int = 1,
    scheduler: Iterable | None = None,
    driver: str | None = None,
    lr: float = 1.0,
    drift=None,
    reward_path=None,
    eval_steps=None,
    seed=None,
) -> Iterator[StepRecord]:
    """Run the bandit for ``n_steps`` and yield a :class:`StepRecord` per step.

    Per step ``i = 1..n_steps``: the scheduler serves prompts; with ``drift``
    the logits are set to ``drift(i)``, with ``reward_path`` the reward table
    to ``reward_path(i)``; ``G`` responses per prompt are drawn;
    every estimator's ``compute(keys, rewards, i, values=true V)`` runs on the
    same sample (paired comparison); with ``driver`` the driver's advantages
    take a policy-gradient step (:meth:`SoftmaxBandit.policy_step`); finally
    every estimator's ``update`` sees the rewards. ``bandit`` is modified in
    place (its logits move).

    Parameters
    ----------
    bandit : SoftmaxBandit
    estimators : mapping label -> estimator (see :func:`make_estimators`)
    n_steps, G : int
    prompts_per_step : int, optional
        Prompts served per step; all prompts every step when None.
    J : int
        Steps each minibatch is served (the paper's schedule).
    scheduler : iterable of prompt-id arrays, optional
        Overrides ``prompts_per_step``/``J`` (default:
        ``kernelvalue.advantage.PromptScheduler``).
    driver : str, optional
        Label of the estimator whose advantages move the policy. Exactly one
        of ``driver`` and ``drift`` must be given.
    lr : float
        Learning rate of the per-prompt gradient step.
    drift : callable step -> theta, optional
        Prescribed logit path (e.g. :class:`LogitDrift`).
    reward_path : callable step -> means, optional
        Reward table at every step (e.g. :class:`RewardShift`, an abrupt
        change); the bandit's own table throughout when None.
    eval_steps : iterable of int, optional
        Steps at which all estimators are computed (default: every step).
        Skipping steps only saves time: the history still grows.
    seed : int or Generator, optional

    Yields
    ------
    StepRecord

    Raises
    ------
    ValueError
        Neither or both of ``driver`` and ``drift``; ``driver`` not among the
        labels; a negative or non-finite ``lr``; non-positive ``n_steps``/``G``.

    Examples
    --------
    >>> b = SoftmaxBandit.random(4, 3, seed=0)
    >>> recs = list(simulate(b, ["oracle", "rloo"], n_steps=3, G=2, driver="rloo", lr=0.5, seed=0))
    >>> [r.step for r in recs], sorted(recs[0].results), recs[0].sample.keys.tolist()
    ([1, 2, 3], ['oracle', 'rloo'], [0, 0, 1, 1, 2, 2, 3, 3])
    """
    estimators = make_estimators(estimators)
    n_steps, G = check_positive_int("n_steps", n_steps), check_positive_int("G", G)
    if (driver is None) == (drift is None):
        raise ValueError("pass exactly one of driver= (policy-gradient steps) and drift= (prescribed logits).")
    if driver is not None and driver not in estimators:
        raise ValueError(f"driver={driver!r} is not one of the estimator labels {sorted(estimators)}.")
    if not (np.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be finite and >= 0, got {lr!r}.")
    rng = np.random.default_rng(seed)
    if scheduler is None:
        if prompts_per_step is None:
            scheduler = itertools.repeat(np.arange(bandit.n_prompts))
        else:
            from kernelvalue.advantage import PromptScheduler

            scheduler = PromptScheduler(bandit.n_prompts, int(prompts_per_step), int(J), int(rng.integers(2**31)))
    scheduler = iter(scheduler)
    eval_set = None if eval_steps is None else {int(s) for s in eval_steps}

    for step in range(1, n_steps + 1):
        prompts = np.asarray(next(scheduler))
        if drift is not None:
            bandit.set_theta(drift(step))
        if reward_path is not None:
            bandit.set_means(reward_path(step))
        sample = bandit.sample(prompts, G, rng)
        record = StepRecord(step, prompts, sample, bandit.exact_gradient(prompts), bandit.theta.copy())
        evaluate = eval_set is None or step in eval_set
        for label, est in estimators.items():
            if evaluate or label == driver:
                record.results[label] = est.compute(sample.keys, sample.rewards, step, values=sample.values)
        if driver is not None:
            bandit.policy_step(sample.keys, sample.actions, to_numpy(record.results[driver].advantages), lr)
        for est in estimators.values():
            est.update(sample.keys, sample.rewards, step)
        if not evaluate:
            record.results = {}
        yield record


def run_comparison(
    bandit: SoftmaxBandit,
    estimators,
    *,
    n_steps: int,
    G: int,
    prompts_per_step: int | None = None,
    J: int = 1,
    scheduler: Iterable | None = None,
    driver: str | None = None,
    lr: float = 1.0,
    drift=None,
    reward_path=None,
    eval_steps=None,
    seed=None,
    inplace: bool = False,
):
    """Run :func:`simulate` and return a tidy table of value and gradient errors.

    Parameters
    ----------
    bandit : SoftmaxBandit
        Copied first unless ``inplace=True`` (then its logits end where the run left them).
    estimators : str, list of str or mapping
        See :func:`make_estimators`; names give fresh estimators.
    n_steps, G, prompts_per_step, J, scheduler, driver, lr, drift, reward_path, eval_steps, seed
        As in :func:`simulate`.
    inplace : bool, default False

    Returns
    -------
    pandas.DataFrame
        One row per (evaluated step, estimator) with columns

        - ``step``, ``estimator``, ``is_driver``;
        - ``value_mse``: mean over responses of ``(baseline - V(x))^2``;
        - ``value_bias``: mean over responses of ``baseline - V(x)``;
        - ``grad_mse``: ``||g_hat - grad J||^2`` (Frobenius, see
          :meth:`SoftmaxBandit.gradient_estimate`);
        - ``grad_norm2``: ``||grad J||^2`` of the exact gradient (for scale);
        - ``mean_value``, ``mean_reward``, ``n_prompts``, ``n_responses``.

        Note: std-normalised advantages (``grpo``) estimate a rescaled
        gradient, so their ``grad_mse`` is not comparable with the others'.

    Examples
    --------
    >>> b = SoftmaxBandit.random(8, 3, seed=0)
    >>> df = run_comparison(b, ["oracle", "rloo", "kae"], n_steps=20, G=4, prompts_per_step=4, J=5,
    ...                     driver="kae", lr=0.5, seed=0)
    >>> df.shape
    (60, 11)
    >>> s = summarize(df, reference="rloo")
    >>> float(s.loc["oracle", "value_mse"]), bool(s.loc["kae", "value_mse_ratio"] < 1)
    (0.0, True)
    """
    import pandas as pd

    if not inplace:
        bandit = bandit.copy()
    estimators = make_estimators(estimators)
    rows = []
    for rec in simulate(
        bandit, estimators, n_steps=n_steps, G=G, prompts_per_step=prompts_per_step, J=J, scheduler=scheduler,
        driver=driver, lr=lr, drift=drift, reward_path=reward_path, eval_steps=eval_steps, seed=seed,
    ):  # fmt: skip
        if not rec.results:
            continue
        s = rec.sample
        gnorm2 = float(np.sum(rec.exact_gradient**2))
        for label, res in rec.results.items():
            b, a = to_numpy(res.baselines), to_numpy(res.advantages)
            err = b - s.values
            ghat = rec.gradient_estimate(a)
            rows.append(
                {
                    "step": rec.step,
                    "estimator": label,
                    "is_driver": label == driver,
                    "value_mse": float(np.mean(err**2)),
                    "value_bias": float(np.mean(err)),
                    "grad_mse": float(np.sum((ghat - rec.exact_gradient) ** 2)),
                    "grad_norm2": gnorm2,
                    "mean_value": float(np.mean(s.values)),
                    "mean_reward": float(np.mean(s.rewards)),
                    "n_prompts": int(np.unique(rec.prompts).size),
                    "n_responses": int(s.keys.size),
                }
            )
    return pd.DataFrame(rows)


def summarize(df, *, after_step: int = 0, reference: str | None = None):
    """Mean value/gradient MSE per estimator over steps ``> after_step``.

    With ``reference`` (an estimator label) adds ``value_mse_ratio`` and
    ``grad_mse_ratio`` columns: each estimator's mean MSE divided by the
    reference's (ratios of means over the same paired steps).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"step": [1, 1], "estimator": ["a", "b"], "value_mse": [1.0, 2.0],
    ...                    "grad_mse": [4.0, 2.0], "value_bias": [0.0, 0.0]})
    >>> summarize(df, reference="a")["value_mse_ratio"].tolist()
    [1.0, 2.0]
    """
    d = df[df["step"] > after_step]
    out = d.groupby("estimator")[["value_mse", "value_bias", "grad_mse"]].mean()
    if reference is not None:
        if reference not in out.index:
            raise ValueError(f"reference={reference!r} is not among the estimators {list(out.index)}.")
        out["value_mse_ratio"] = out["value_mse"] / out.loc[reference, "value_mse"]
        out["grad_mse_ratio"] = out["grad_mse"] / out.loc[reference, "grad_mse"]
    return out


def value_bias_variance(
    bandit: SoftmaxBandit,
    estimators,
    *,
    n_replicates: int,
    n_steps: int,
    G: int,
    drift=None,
    eval_steps=None,
    seed=None,
):
    """Bias^2 / variance decomposition of each estimator's value error.

    Every prompt of ``bandit`` is replicated ``n_replicates`` times
    (:meth:`SoftmaxBandit.replicate`), all prompts are served every step and
    follow ``drift`` (replicated too), so at an evaluation step all replicates
    of prompt ``x`` share ``V_i(x)`` and their baselines are independent
    draws of the estimator. Per prompt, with ``ddof=0``,

        mean_r (b - V)^2 = (mean_r b - V)^2 + var_r(b)      (exactly),

    averaged over prompts and evaluation steps (all responses of a replicate
    count; they share the history). The plug-in ``bias2`` is inflated by the
    noise of the replicate mean, ``E[bias2] = bias^2 + bias2_noise`` with
    ``bias2_noise = Var(replicate means) / n_replicates``: subtract it for an
    unbiased estimate when the bias is small.

    Parameters
    ----------
    bandit : SoftmaxBandit
        The template prompts.
    estimators : mapping label -> estimator spec (fresh state required)
    n_replicates, n_steps, G : int
    drift : LogitDrift or callable, optional
        Path of the *template* logits; the fixed current logits when None.
    eval_steps : iterable of int, optional
        Default: the last step.

    Returns
    -------
    pandas.DataFrame
        Columns ``estimator``, ``bias2``, ``variance``, ``mse``
        (``= bias2 + variance``), ``bias2_noise``.

    Examples
    --------
    >>> b = SoftmaxBandit.random(2, 3, seed=0)
    >>> out = value_bias_variance(b, {"oracle": "oracle", "kae": ("kae", {"bandwidth": 0.5})},
    ...                           n_replicates=20, n_steps=10, G=2, seed=0).set_index("estimator")
    >>> bool(out.loc["oracle", "mse"] < 1e-20), bool(out.loc["kae", "variance"] > 0)   # the oracle is exact
    (True, True)
    """
    import pandas as pd

    n_replicates = check_positive_int("n_replicates", n_replicates)
    P = bandit.n_prompts
    rep = bandit.replicate(n_replicates)
    if drift is None:
        theta = rep.theta.copy()

        def rep_drift(step):
            return theta
    else:

        def rep_drift(step):
            return np.tile(drift(step), (n_replicates, 1))

    eval_steps = [n_steps] if eval_steps is None else list(eval_steps)
    acc: dict[str, list] = {}
    for rec in simulate(
        rep, estimators, n_steps=n_steps, G=G, drift=rep_drift, eval_steps=eval_steps, seed=seed
    ):
        if not rec.results:
            continue
        keys = rec.sample.keys
        template = keys % P
        cnt = np.bincount(template, minlength=P)
        v = np.bincount(template, weights=rec.sample.values, minlength=P) / cnt
        rep_cnt = np.bincount(keys, minlength=P * n_replicates)
        for label, res in rec.results.items():
            b = to_numpy(res.baselines)
            mean_b = np.bincount(template, weights=b, minlength=P) / cnt
            var_b = np.bincount(template, weights=(b - mean_b[template]) ** 2, minlength=P) / cnt
            # Noise the plug-in bias^2 carries: Var(mean_b) = Var(replicate means) / R (replicates are
            # independent; responses within one share the history, so they are not).
            rep_mean = np.bincount(keys, weights=b, minlength=P * n_replicates) / np.maximum(rep_cnt, 1)
            rep_mean = rep_mean.reshape(n_replicates, P)
            noise = rep_mean.var(axis=0, ddof=1) / n_replicates if n_replicates > 1 else np.full(P, np.nan)
            acc.setdefault(label, []).append((np.mean((mean_b - v) ** 2), np.mean(var_b), np.mean(noise)))
    rows = []
    for label, vals in acc.items():
        bias2, var, noise = np.mean(np.asarray(vals), axis=0)
        rows.append({"estimator": label, "bias2": bias2, "variance": var, "mse": bias2 + var, "bias2_noise": noise})
    return pd.DataFrame(rows)


def kae_value_moments(values, variances, *, step: int, bandwidth: float, G: int, counts=None, kernel="triangular"):
    """Exact mean and variance of the paper's KAE baseline under a prescribed drift.

    When the policy path is deterministic (:class:`LogitDrift`), past rewards
    are independent with known means ``V_j(x)`` and variances ``s_j^2(x)``, so
    the leave-one-out Nadaraya-Watson baseline of a response at step ``i``,

        b = [sum_{j<i} c_j K_j Zbar_j + K(0) sum_{k != g} Z_k] / W,
        K_j = K((i - j) / (i h)),  W = sum_{j<i} c_j K_j + (G - 1) K(0),

    (``c_j`` rewards of the prompt at step ``j``, ``Zbar_j`` their mean) has

        E b   = [sum_j c_j K_j V_j + (G - 1) K(0) V_i] / W,
        Var b = [sum_j c_j K_j^2 s_j^2 + (G - 1) K(0)^2 s_i^2] / W^2.

    ``E b - V_i`` is the drift bias of the one-sided window and the variance
    falls as the window's effective sample size grows: the two sides of the
    bandwidth trade-off, exactly (no asymptotics).

    Parameters
    ----------
    values, variances : array-like, shape (P, i) or (i,)
        ``V_j(x)`` and ``Var(Z | x)`` at steps ``j = 1..i`` (column ``j - 1``).
    step : int
        The step ``i`` the baseline is computed at.
    bandwidth : float
        Relative bandwidth ``h``.
    G : int
        Responses at step ``i`` (the current group).
    counts : array-like, shape (P, i - 1) or (i - 1,), optional
        Rewards recorded at steps ``1..i-1`` (default ``G`` at every step).
    kernel : str or Kernel

    Returns
    -------
    mean, var : ndarray, shape (P,), or floats for 1-D input
        NaN where the denominator ``W`` is zero (``G = 1``, empty window).

    Examples
    --------
    >>> v = np.linspace(0.2, 0.6, 5)            # V_1..V_5, linear drift
    >>> m, var = kae_value_moments(v, v * (1 - v), step=5, bandwidth=1.0, G=2)
    >>> bool(m < v[-1])                          # a one-sided window lags a rising V
    True
    """
    kern = get_kernel(kernel)
    step, G = check_positive_int("step", step), check_positive_int("G", G)
    v = np.atleast_2d(np.asarray(values, dtype=float))
    s2 = np.atleast_2d(np.asarray(variances, dtype=float))
    if v.shape != s2.shape or v.shape[1] != step:
        raise ValueError(
            f"values and variances must both have {step} columns (steps 1..step), got {v.shape} and {s2.shape}."
        )
    c = np.full((v.shape[0], step - 1), float(G)) if counts is None else np.atleast_2d(np.asarray(counts, float))
    if c.shape != (v.shape[0], step - 1):
        raise ValueError(f"counts must have shape {(v.shape[0], step - 1)} (steps 1..step-1), got {c.shape}.")
    lag = step - np.arange(1, step, dtype=float)
    k = np.asarray(kern(lag / (step * float(bandwidth))), dtype=float)
    k0 = kern.k0
    W = c @ k + (G - 1) * k0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ((c * v[:, :-1]) @ k + (G - 1) * k0 * v[:, -1]) / W
        var = ((c * s2[:, :-1]) @ (k * k) + (G - 1) * k0 * k0 * s2[:, -1]) / W**2
    if np.ndim(values) == 1:
        return float(mean[0]), float(var[0])
    return mean, var


# ---------------------------------------------------------------------------
# Scenario suite
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A training situation with exactly known values, for comparing advantage estimators.

    A scenario fixes how prompts are made, how the policy moves, the reward law
    and the prompt schedule. The seed draws the prompts (reward tables, the
    drift's end point, the shifted table) and the rewards, so seeds are
    independent replicates of the scenario; within one run every estimator sees
    the same samples (paired).

    Parameters
    ----------
    name, description : str
    n_prompts : int, default 64
        Prompt pool of a recurrent schedule.
    prompts_per_step : int, default 16
    J : int, default 8
        Consecutive steps each minibatch is served (the paper's schedule).
    recurrent : bool, default True
        True: the pool is cycled epoch after epoch, so prompts recur (every
        ``n_prompts / prompts_per_step * J`` steps). False: every prompt is
        served in exactly one ``J``-block (the pool is as large as the run
        needs; ``n_prompts`` is ignored).
    drift : float, default 1.0
        Prescribed policy path: logits move linearly from their start to
        ``start + N(0, drift^2)`` over the first ``drift_span`` of the run,
        every prompt at every step (as shared LLM parameters do), then stay.
        0: a fixed policy.
    drift_span : float in (0, 1], default 1.0
        Fraction of the run the displacement takes.
    lr : float, optional
        Train the policy instead: policy-gradient steps driven by the oracle
        advantage with this learning rate (a prompt's value then moves only
        when it is served). Needs ``drift=0``.
    reward : {"bernoulli", "beta"}, default "bernoulli"
    concentration : float, default 2.0
        Of the Beta (graded) law.
    shift_at : float in (0, 1), optional
        Fraction of the run at which the reward table is redrawn (abrupt change).
    easy, impossible : float, default 0
        Shares of prompts whose actions all pay a mean in ``U(0.9, 1)``
        (easy) or exactly 0 (impossible).
    difficulty_scale : float, default 2.0
        Spread of prompt difficulty (:meth:`SoftmaxBandit.random`).
    n_actions : int, default 4

    Examples
    --------
    >>> sc = Scenario("demo", "two steps", n_prompts=8, prompts_per_step=4, J=2)
    >>> df = sc.run(["oracle", "rloo"], G=2, seed=0, n_steps=3)
    >>> df.shape[0], float(df[df.estimator == "oracle"].value_mse.max())
    (6, 0.0)
    """

    name: str
    description: str
    n_prompts: int = 64
    prompts_per_step: int = 16
    J: int = 8
    recurrent: bool = True
    drift: float = 1.0
    drift_span: float = 1.0
    lr: float | None = None
    reward: str = "bernoulli"
    concentration: float = 2.0
    shift_at: float | None = None
    easy: float = 0.0
    impossible: float = 0.0
    difficulty_scale: float = 2.0
    n_actions: int = 4

    def __post_init__(self):
        if self.reward not in ("bernoulli", "beta"):
            raise ValueError(f"reward={self.reward!r}: scenarios use bounded rewards, 'bernoulli' or 'beta'.")
        if self.lr is not None and self.drift != 0:
            raise ValueError("pass either a prescribed drift (drift > 0) or a trained policy (lr=...), not both.")
        if not 0 < self.drift_span <= 1:
            raise ValueError(f"drift_span must be a fraction of the run in (0, 1], got {self.drift_span!r}.")
        if self.shift_at is not None and not 0 < self.shift_at < 1:
            raise ValueError(f"shift_at must be a fraction of the run in (0, 1), got {self.shift_at!r}.")
        if not (0 <= self.easy and 0 <= self.impossible and self.easy + self.impossible <= 1):
            raise ValueError("easy and impossible are shares of the prompts: each >= 0, together <= 1.")

    def _table(self, P, rng) -> np.ndarray:
        d = rng.normal(0.0, self.difficulty_scale, size=(P, 1))
        c = rng.normal(0.0, 1.5, size=(P, self.n_actions))
        means = 1.0 / (1.0 + np.exp(-(d + c)))
        perm = rng.permutation(P)
        n_imp, n_easy = round(self.impossible * P), round(self.easy * P)
        means[perm[:n_imp]] = 0.0
        means[perm[n_imp : n_imp + n_easy]] = rng.uniform(0.9, 1.0, (n_easy, self.n_actions))
        return means

    def build(self, *, n_steps: int, seed) -> tuple[SoftmaxBandit, dict]:
        """The bandit and the :func:`run_comparison` keywords of one replicate.

        Returns
        -------
        bandit : SoftmaxBandit
        kwargs : dict
            ``scheduler``, ``seed`` and ``drift`` or ``driver``/``lr``, plus
            ``reward_path`` for an abrupt change.
        """
        import zlib

        from kernelvalue.advantage import PromptScheduler

        n_steps = check_positive_int("n_steps", n_steps)
        streams = np.random.SeedSequence([int(seed), zlib.crc32(self.name.encode())]).spawn(4)
        rng = np.random.default_rng(streams[0])
        P = self.n_prompts if self.recurrent else self.prompts_per_step * -(-n_steps // self.J)
        means = self._table(P, rng)
        bandit = SoftmaxBandit(means, rng.normal(0.0, 1.0, means.shape), reward=self.reward,
                               concentration=self.concentration)  # fmt: skip
        sched_seed = int(streams[1].generate_state(1)[0])
        kwargs: dict = {"scheduler": PromptScheduler(P, self.prompts_per_step, self.J, sched_seed), "seed": streams[2]}
        if self.lr is not None:
            kwargs.update(driver="oracle", lr=self.lr)
        else:
            end = bandit.theta + rng.normal(0.0, self.drift, means.shape)
            kwargs["drift"] = LogitDrift(bandit.theta, end, self.drift_span * n_steps)
        if self.shift_at is not None:
            after = self._table(P, np.random.default_rng(streams[3]))
            kwargs["reward_path"] = RewardShift(means, after, max(2, round(self.shift_at * n_steps)))
        return bandit, kwargs

    def run(self, estimators, *, G: int, seed, n_steps: int, eval_steps=None):
        """:func:`run_comparison` on one replicate (``"oracle"`` is added when missing: it drives
        trained scenarios and is the gradient reference).

        Returns
        -------
        pandas.DataFrame
            :func:`run_comparison`'s per-step table.
        """
        ests = make_estimators(estimators)
        if "oracle" not in ests:
            ests["oracle"] = make_estimators("oracle")["oracle"]
        bandit, kwargs = self.build(n_steps=n_steps, seed=seed)
        return run_comparison(bandit, ests, n_steps=n_steps, G=G, eval_steps=eval_steps, inplace=True, **kwargs)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("slow_drift", "logits move by N(0, 1) over the run; 64 prompts, 16 per step, J = 8, recurrent"),
        Scenario("fast_drift", "logits move by N(0, 4^2) over the first half of the run, then stay",
                 drift=4.0, drift_span=0.5),
        Scenario("abrupt_change", "slow drift; the reward table is redrawn at mid-run", shift_at=0.5),
        Scenario("graded", "slow drift; Beta rewards in [0, 1] (concentration 2), not 0/1", reward="beta"),
        Scenario("heterogeneous", "slow drift; a quarter of the prompts easy (mean >= 0.9), a quarter impossible (0)",
                 easy=0.25, impossible=0.25),
        Scenario("no_recurrence", "slow drift; every prompt is served in one J-block only, never again",
                 recurrent=False),
        Scenario("trained", "policy trained by oracle policy-gradient steps (lr 0.3): values move only when served",
                 drift=0.0, lr=0.3),
    )
}  # fmt: skip
"""The suite of :func:`run_suite`: slow and fast drift, an abrupt change, graded rewards,
heterogeneous prompts, schedules with and without recurrence, and a trained policy."""


def _check_specs(estimators) -> dict:
    if isinstance(estimators, str):
        estimators = [estimators]
    if not isinstance(estimators, Mapping):
        estimators = {name: name for name in estimators}
    for label, item in estimators.items():
        if hasattr(item, "compute"):
            raise TypeError(
                f"run_suite needs estimator specs (a name or (name, kwargs)), not an estimator object for "
                f"{label!r}: every run starts from a fresh estimator."
            )
    return dict(estimators)


def run_suite(estimators, scenarios=None, *, Gs=(1, 2, 4, 8, 16), seeds=range(5), n_steps: int = 200,
              progress=None):  # fmt: skip
    """Run registry estimators on a suite of scenarios, paired, over seeds.

    Every (scenario, G, seed) is one :meth:`Scenario.run`: all estimators on the
    same samples, every step evaluated. Seeds are independent replicates
    (fresh prompts, drift and rewards), so the spread of per-seed means is the
    honest uncertainty of a comparison (:func:`suite_summary`,
    :func:`compare_on_suite`).

    Parameters
    ----------
    estimators : str, list of str or mapping label -> name / (name, kwargs) / dict
        Specs, not objects: every run builds fresh estimators. ``"oracle"`` is
        always added (the gradient reference, and the driver of trained scenarios).
    scenarios : iterable of Scenario or names, optional
        Default: every scenario of :data:`SCENARIOS`.
    Gs : iterable of int
        Responses per prompt.
    seeds : iterable of int
    n_steps : int
    progress : callable, optional
        Called with a short string after each run (e.g. ``print``).

    Returns
    -------
    pandas.DataFrame
        One row per (scenario, G, seed, estimator): ``value_mse``,
        ``value_bias``, ``grad_mse`` (means over the run's steps).

    Examples
    --------
    >>> df = run_suite(["rloo", "kae"], ["slow_drift"], Gs=(2,), seeds=[0, 1], n_steps=10)
    >>> sorted(df.estimator.unique()), len(df)
    (['kae', 'oracle', 'rloo'], 6)
    """
    import pandas as pd

    specs = _check_specs(estimators)
    specs.setdefault("oracle", "oracle")
    chosen = [SCENARIOS[s] if isinstance(s, str) else s for s in (SCENARIOS if scenarios is None else scenarios)]
    frames = []
    for sc in chosen:
        for G in Gs:
            for seed in seeds:
                df = sc.run(specs, G=G, seed=seed, n_steps=n_steps)
                agg = df.groupby("estimator", sort=False)[["value_mse", "value_bias", "grad_mse"]].mean()
                frames.append(agg.reset_index().assign(scenario=sc.name, G=G, seed=seed))
                if progress is not None:
                    progress(f"{sc.name} G={G} seed={seed}")
    out = pd.concat(frames, ignore_index=True)
    return out[["scenario", "G", "seed", "estimator", "value_mse", "value_bias", "grad_mse"]]


def suite_summary(df, metric: str = "value_mse", *, reference: str | None = None, level: float = 0.95):
    """Mean of ``metric`` over seeds per (scenario, G, estimator) with a t interval.

    With ``reference``, each seed's value is first divided by the reference
    estimator's in the same run (paired ratios, e.g. gradient MSE relative to
    the oracle's).

    Returns
    -------
    pandas.DataFrame
        Index (scenario, G, estimator); columns ``mean``, ``ci_low``,
        ``ci_high``, ``n_seeds``. One seed gives a NaN interval.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"scenario": "s", "G": 1, "seed": [0, 1, 0, 1], "estimator": ["a", "a", "b", "b"],
    ...                    "value_mse": [1.0, 3.0, 2.0, 2.0]})
    >>> suite_summary(df).loc[("s", 1, "a"), ["mean", "n_seeds"]].tolist()
    [2.0, 2.0]
    >>> float(suite_summary(df, reference="b").loc[("s", 1, "a"), "mean"])    # (1/2 + 3/2) / 2
    1.0
    """
    import pandas as pd
    from scipy import stats

    d = df[["scenario", "G", "seed", "estimator", metric]].copy()
    if reference is not None:
        ref = d[d.estimator == reference].set_index(["scenario", "G", "seed"])[metric]
        if ref.empty:
            raise ValueError(f"reference={reference!r} is not among the estimators {sorted(d.estimator.unique())}.")
        keys = pd.MultiIndex.from_frame(d[["scenario", "G", "seed"]])
        d[metric] = d[metric].to_numpy() / ref.reindex(keys).to_numpy()
    g = d.groupby(["scenario", "G", "estimator"], sort=False)[metric]
    out = g.agg(mean="mean", sd="std", n_seeds="count")
    half = stats.t.ppf(0.5 + level / 2, out.n_seeds - 1) * out.sd / np.sqrt(out.n_seeds)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out[["mean", "ci_low", "ci_high", "n_seeds"]]


def compare_on_suite(df, candidate: str, against, metric: str = "value_mse", *, level: float = 0.95):
    """Paired comparison of ``candidate`` with the best of ``against`` in every (scenario, G).

    The best is the estimator of ``against`` with the lowest mean ``metric``
    over seeds (chosen on the same data, which favours it: the comparison is
    conservative for the candidate). The per-seed differences ``candidate -
    best`` are paired (same samples), so their t interval is the seed-level
    uncertainty of the gap.

    Returns
    -------
    pandas.DataFrame
        Index (scenario, G); columns ``best``, ``candidate_mean``,
        ``best_mean``, ``ratio`` (of means), ``diff``, ``ci_low``, ``ci_high``
        and ``verdict``: ``"better"`` (interval below 0), ``"worse"`` (above 0)
        or ``"tie"``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"scenario": "s", "G": 1, "seed": [0, 1, 2] * 3,
    ...                    "estimator": ["c"] * 3 + ["p"] * 3 + ["q"] * 3,
    ...                    "value_mse": [1.0, 1.1, 0.9, 2.0, 2.2, 1.9, 3.0, 3.0, 3.0]})
    >>> compare_on_suite(df, "c", ["p", "q"]).loc[("s", 1), ["best", "verdict"]].tolist()
    ['p', 'better']
    """
    import pandas as pd
    from scipy import stats

    against = [against] if isinstance(against, str) else list(against)
    wide = df.pivot_table(index=["scenario", "G", "seed"], columns="estimator", values=metric, sort=False)
    missing = sorted({candidate, *against} - set(wide.columns))
    if missing:
        raise ValueError(f"{missing} not among the estimators of the suite table {sorted(wide.columns)}.")
    rows = []
    for (scenario, G), cell in wide.groupby(level=["scenario", "G"], sort=False):
        best = cell[against].mean().idxmin()
        diff = (cell[candidate] - cell[best]).to_numpy()
        n = diff.size
        half = stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        lo, hi = diff.mean() - half, diff.mean() + half
        verdict = "better" if hi < 0 else "worse" if lo > 0 else "tie"
        c_mean, b_mean = cell[candidate].mean(), cell[best].mean()
        rows.append({"scenario": scenario, "G": G, "best": best, "candidate_mean": c_mean, "best_mean": b_mean,
                     "ratio": c_mean / b_mean, "diff": diff.mean(), "ci_low": lo, "ci_high": hi,
                     "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows).set_index(["scenario", "G"])


# ---------------------------------------------------------------------------
def _gradient_estimate(theta, keys, actions, advantages) -> np.ndarray:
    actions = np.asarray(actions)
    adv = np.asarray(advantages, dtype=float)
    if not (keys.shape == actions.shape == adv.shape) or keys.ndim != 1:
        raise ValueError(
            f"keys, actions and advantages must be 1-D of one length, got shapes "
            f"{keys.shape}, {actions.shape}, {adv.shape}."
        )
    if actions.size and (actions.min() < 0 or actions.max() >= theta.shape[1]):
        raise ValueError(f"actions must lie in [0, {theta.shape[1]}); got values outside.")
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = adv / (counts[inv] * uniq.size)
    grad = np.zeros_like(theta)
    # e_a part: scatter-add w onto (x, a); the -pi part: per-prompt sum of w times pi.
    np.add.at(grad, (keys, actions), w)
    wsum = np.bincount(inv, weights=w, minlength=uniq.size)
    grad[uniq] -= wsum[:, None] * softmax(theta[uniq])
    return grad
