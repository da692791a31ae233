"""verl's entry point into kernelvalue (group ``verl.plugins``): imports :mod:`.verl`, loudly.

verl loads every ``verl.plugins`` entry point when it is imported and logs a
failing one only at DEBUG level, so a broken install would surface much later
as "Unknown advantage estimator". This module logs the cause at ERROR level
first, naming what stops working, then lets verl carry on without the plugin.
"""

import logging

try:
    from . import verl  # noqa: F401  (registers the estimators and the trainer mode on import)
except Exception:
    logging.getLogger(__name__).exception(
        "kernelvalue's verl plugin failed to load: algorithm.adv_estimator=kae|kae_ll|kae_cv|kae_shrink and "
        'trainer.v1.trainer_mode=kae will be unknown to verl. Reinstall with pip install "kernelvalue[verl]"; '
        "the cause follows."
    )
    raise
