"""KAE inside the engines people scale out with: verl and TRL.

Each engine has its own module, imported only where that engine is installed
(``pip install "kernelvalue[verl]"`` / ``"kernelvalue[trl]"``):

* :mod:`kernelvalue.integrations.verl`: the ``kae``, ``kae_ll``, ``kae_cv`` and
  ``kae_shrink`` advantage estimators in verl's registry and the ``kae``
  trainer mode (loaded by verl itself through the ``verl.plugins`` entry point).
* :mod:`kernelvalue.integrations.trl`: ``KAEGRPOTrainer``, a drop-in
  ``GRPOTrainer``.

Engine-free pieces shared by both: :mod:`.schedule` (the J-step prompt
sampler) and :mod:`.common` (stable keys, per-step updates, state files).
"""
