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

KAE's bandwidth has two readings (``window="relative"``: ``K((i - I_j)/(i h))``,
the default; ``window="absolute"``: ``K((i - I_j)/h)``, ``h`` in steps), recorded
in ``params`` and ``state_dict()``. Failure behaviour: bad options and keys raise
errors naming them; rewards beyond what an estimator can hold exactly raise a
ValueError before any state changes (stateful estimators: ``|Z| <= REWARD_LIMIT``);
``load_state_dict`` validates everything first and is all or nothing; memory is
bounded by ``max_prompts`` and ``max_per_prompt``.
"""

from .base import (
    ESTIMATORS,
    REWARD_LIMIT,
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
    "REWARD_LIMIT",
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
