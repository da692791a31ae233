"""Advantage estimators for RL on language models: KAE, its extensions, the paper's
baselines and peers, behind one protocol and a registry.

>>> import numpy as np
>>> from kernelvalue.advantage import get_estimator, ESTIMATORS
>>> est = get_estimator("kae", bandwidth=0.2, kernel="triangular")
>>> res = est.compute([7, 7, 9], np.array([1.0, 0.0, 1.0]), step=1)
>>> est.update([7, 7, 9], np.array([1.0, 0.0, 1.0]), step=1)
>>> res.baselines    # prompt 7: leave-one-out; prompt 9: G = 1, no history -> fallback 0
array([0., 1., 0.])

Names: see ``sorted(ESTIMATORS)``; each class documents its options.
"""

from .base import (
    ESTIMATORS,
    AdvantageEstimator,
    AdvantageResult,
    StatefulEstimator,
    estimator_params,
    get_estimator,
    group_ids,
    register_estimator,
)
from .baselines import GPG, GRPO, RLOO, DrGRPO, Oracle, Reinforce, ReinforcePP
from .history import RewardHistory
from .kae import KAE, KAECrossValidated, KAELocalLinear, KAEShrink, eb_shrink
from .peers import EMA, JSPO, KRPO, SPO
from .scheduler import PromptScheduler
from .adaptive import KAEAuto  # noqa: E402,I001 - last, so the registry lists it after the paper's estimators

__all__ = [
    "ESTIMATORS",
    "AdvantageEstimator",
    "AdvantageResult",
    "StatefulEstimator",
    "estimator_params",
    "get_estimator",
    "group_ids",
    "register_estimator",
    "RewardHistory",
    "PromptScheduler",
    "KAE",
    "KAELocalLinear",
    "KAECrossValidated",
    "KAEShrink",
    "KAEAuto",
    "eb_shrink",
    "GRPO",
    "DrGRPO",
    "RLOO",
    "Reinforce",
    "ReinforcePP",
    "GPG",
    "Oracle",
    "SPO",
    "KRPO",
    "JSPO",
    "EMA",
]
