"""The paper's baselines: GRPO-type (GRPO, Dr. GRPO, GPG), REINFORCE-type
(REINFORCE, RLOO, REINFORCE++) and the Oracle. All stateless.

Conventions follow verl's ``core_algos`` outcome-reward estimators where they
exist (singleton groups of GRPO/Dr. GRPO get mean 0 and std 1, ``eps = 1e-6``,
``torch.std``'s unbiased std); each class says where it departs.

Extreme rewards: every estimator here accepts any finite reward. They work on
the batch divided by a power of two when its largest magnitude is outside
``[2**-128, 2**128]`` (exact, see :func:`~kernelvalue.advantage.base.prepare_batch`),
so group sums and squared deviations never overflow or underflow; GRPO and
REINFORCE++ advantages are then finite whatever the rewards. Where the exact
result itself does not fit the output dtype (``Z - baseline`` for rewards of
opposite signs near the float limit), ``compute`` raises a ValueError instead
of returning inf. Group means are refined in a second pass (the corrected
two-pass algorithm), so a group of equal rewards has deviations, and hence
GRPO/GPG advantages, of exactly 0 even with ``eps = 0``.

Examples
--------
>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator
>>> z = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
>>> get_estimator("drgrpo").compute([0, 0, 0, 1, 1, 1], z, step=1).advantages.round(3)
array([ 0.667, -0.333, -0.333,  0.   ,  0.   ,  0.   ])
"""

from __future__ import annotations

import numpy as np

from .base import AdvantageEstimator, Batch, check_eps, check_positive, register_estimator

__all__ = ["GRPO", "DrGRPO", "RLOO", "Reinforce", "ReinforcePP", "GPG", "Oracle"]


def _centre(z, mean, inverse, group_sum, counts):
    """Means refined by a second pass over the deviations (Chan, Golub and LeVeque,
    1983), and the deviations from them: equal rewards give deviations of exactly 0."""
    dev = z - mean[inverse]
    fix = group_sum(dev) / counts
    return mean + fix, dev - fix[inverse]


def _group_centre(batch: Batch):
    """Group means with verl's singleton rule (mean 0 for a group of one), and each
    response's deviation from its group's mean."""
    mean, dev = _centre(batch.z, batch.sums / batch.counts, batch.inverse, batch.group_sum, batch.counts)
    single = batch.counts[batch.inverse] == 1
    return np.where(batch.counts > 1, mean, 0.0), np.where(single, batch.z, dev)


def _safe_ratio(num, den):
    """``num / den``, and 0 where ``den`` is 0 (then ``num`` is 0 too: a spread of 0)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


@register_estimator("grpo")
class GRPO(AdvantageEstimator):
    """GRPO: ``A = (Z - mean_group) / (std_group + eps)``.

    ``std`` is the unbiased (``G - 1``) group std, as ``torch.std`` in verl;
    a group of one gets mean 0 and std 1 (verl), so its advantage is ``Z/(1+eps)``.

    Parameters
    ----------
    eps : float, default 1e-6
        verl's ``epsilon``.

    Examples
    --------
    >>> import numpy as np
    >>> res = GRPO().compute([0, 0, 0, 0], np.array([1.0, 0.0, 0.0, 0.0]), step=1)
    >>> float(res.baselines[0]), res.advantages.round(3)   # std = 0.5 (unbiased)
    (0.25, array([ 1.5, -0.5, -0.5, -0.5]))
    """

    rescales = True

    def __init__(self, eps=1e-6):
        self.eps = check_eps("eps", eps)
        self._params = {"eps": self.eps}

    def _compute(self, batch: Batch):
        mean, dev = _group_centre(batch)
        ss = batch.group_sum(dev * dev)
        g = batch.counts
        one = np.ldexp(1.0, -batch.exp)  # verl's singleton std of 1, in the batch's units
        std = np.where(g > 1, np.sqrt(ss / np.maximum(g - 1.0, 1.0)), one)
        eps = np.ldexp(self.eps, -batch.exp)
        base = batch.unscale(mean[batch.inverse])
        if not np.isfinite(eps):  # tiny rewards: std is negligible next to eps
            return batch.unscale(dev) / self.eps, base
        return _safe_ratio(dev, std[batch.inverse] + eps), base


@register_estimator("drgrpo", "dr_grpo", "dr.grpo")
class DrGRPO(AdvantageEstimator):
    """Dr. GRPO (Liu et al., 2025): ``A = Z - mean_group``, no std division.

    A group of one gets baseline 0 (verl's singleton rule), so ``A = Z``.

    Examples
    --------
    >>> import numpy as np
    >>> DrGRPO().compute([0, 0, 1], np.array([1.0, 0.0, 1.0]), step=1).advantages
    array([ 0.5, -0.5,  1. ])
    """

    rescales = True

    def _compute(self, batch: Batch):
        mean, dev = _group_centre(batch)
        return batch.unscale(dev), batch.unscale(mean[batch.inverse])


@register_estimator("rloo")
class RLOO(AdvantageEstimator):
    """RLOO (Ahmadian et al., 2024): baseline = mean of the other responses of the group.

    ``A = Z_g - (S - Z_g)/(G - 1)``. A group of one has no other response:
    baseline 0, so ``A = Z`` (plain REINFORCE for that prompt; verl's loop
    version does the same).

    Examples
    --------
    >>> import numpy as np
    >>> RLOO().compute([0, 0, 0], np.array([1.0, 0.0, 0.0]), step=1).baselines
    array([0. , 0.5, 0.5])
    """

    rescales = True

    def _compute(self, batch: Batch):
        inv = batch.inverse
        g = batch.counts[inv]
        base = np.where(g > 1, (batch.sums[inv] - batch.z) / np.maximum(g - 1.0, 1.0), 0.0)
        return batch.unscale(batch.z - base), batch.unscale(base)


@register_estimator("reinforce")
class Reinforce(AdvantageEstimator):
    """REINFORCE (Williams, 1992) without a baseline: ``A = Z``.

    Examples
    --------
    >>> import numpy as np
    >>> Reinforce().compute([0, 1], np.array([1.0, 0.0]), step=1).advantages
    array([1., 0.])
    """

    def _compute(self, batch: Batch):
        base = np.zeros_like(batch.z)
        return batch.z.copy(), base


@register_estimator("reinforce_pp", "reinforce++", "reinforce_plus_plus", "rpp")
class ReinforcePP(AdvantageEstimator):
    """REINFORCE++ (Hu, 2025) for outcome rewards: global batch whitening.

    ``A = (Z - mean_batch) / sqrt(var_batch + 1e-8)`` with the unbiased batch
    variance -- verl's ``masked_whiten`` applied to one scalar return per
    response. The baseline reported is the batch mean. A batch of one response
    gets variance 0 (verl raises there).

    Parameters
    ----------
    eps : float, default 1e-8
        Added to the variance (verl's ``masked_whiten``).

    Examples
    --------
    >>> import numpy as np
    >>> ReinforcePP(eps=0.0).compute([0, 0, 1, 1], np.array([1.0, 0.0, 1.0, 0.0]), step=1).advantages.round(3)
    array([ 0.866, -0.866,  0.866, -0.866])
    """

    rescales = True

    def __init__(self, eps=1e-8):
        self.eps = check_eps("eps", eps)
        self._params = {"eps": self.eps}

    def _compute(self, batch: Batch):
        z = batch.z
        n = z.shape[0]
        zero = np.zeros(n, dtype=np.int64)
        mean, dev = _centre(z, np.array([z.mean()]), zero, lambda v: np.array([v.sum()]), float(n))
        var = float((dev * dev).sum() / (n - 1)) if n > 1 else 0.0
        eps = np.ldexp(self.eps, -2 * batch.exp)
        base = batch.unscale(np.full_like(z, mean[0]))
        if not np.isfinite(eps):  # tiny rewards: the variance is negligible next to eps
            return batch.unscale(dev) / np.sqrt(self.eps), base
        return _safe_ratio(dev, np.full_like(z, np.sqrt(var + eps))), base


@register_estimator("gpg")
class GPG(AdvantageEstimator):
    """GPG (Chu et al., 2025, "GPG: A Simple and Strong RL Baseline for Model Reasoning").

    Our reading of the paper: group-mean baseline, no std normalisation
    (``F_norm = 1``), and the "accurate gradient estimation" correction
    ``alpha = B / (B - M)``: the loss is averaged over all ``B`` responses but
    the ``M`` responses of groups whose rewards are all equal carry zero
    advantage and so no gradient; rescaling by ``alpha`` restores the average
    over the informative responses. ``A = alpha (Z - mean_group) / F_norm``;
    ``alpha = 1`` when every group is degenerate (all advantages are 0 then).

    Departures: verl's implementation uses ``alpha = B / count_nonzero(Z)``
    (nonzero *rewards*); we count zero-advantage groups as the paper describes.
    Groups of one follow verl's singleton rule (baseline 0, so ``A = alpha Z``)
    and do not count as degenerate. The paper's resampling of batches with too
    few valid groups is a data-pipeline step and not done here.

    Parameters
    ----------
    f_norm : float, default 1.0
        Constant divisor ``F_norm``.

    Examples
    --------
    >>> import numpy as np
    >>> # prompt 0 is degenerate (M = 2 of B = 4): the rest is scaled by 4 / 2
    >>> GPG().compute([0, 0, 1, 1], np.array([1.0, 1.0, 1.0, 0.0]), step=1).advantages
    array([ 0.,  0.,  1., -1.])
    """

    rescales = True

    def __init__(self, f_norm=1.0):
        self.f_norm = check_positive("f_norm", f_norm)
        self._params = {"f_norm": self.f_norm}

    def _compute(self, batch: Batch):
        inv = batch.inverse
        mean, dev = _group_centre(batch)
        # equal rewards have deviations of exactly 0 (_centre), unequal ones cannot all be 0
        degenerate = (batch.counts > 1) & (batch.group_sum(dev != 0) == 0)
        B = float(batch.z.shape[0])
        M = float(batch.counts[degenerate].sum())
        alpha = B / (B - M) if B > M else 1.0
        return batch.unscale(alpha * dev / self.f_norm), batch.unscale(mean[inv])


@register_estimator("oracle", "true_value")
class Oracle(AdvantageEstimator):
    """The oracle baseline: the true value ``V(x)`` passed as ``values``.

    ``A = Z - values``. ``compute`` raises a ValueError when ``values`` is missing.

    Examples
    --------
    >>> import numpy as np
    >>> Oracle().compute([0, 0], np.array([1.0, 0.0]), step=1, values=np.array([0.3, 0.3])).advantages
    array([ 0.7, -0.3])
    """

    needs_values = True

    def _compute(self, batch: Batch, values):
        return batch.z - values, values.copy()
