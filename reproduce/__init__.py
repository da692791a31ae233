"""Reproduction harness for the KAE paper: synthetic task, tiny LM warm start, RL trainer, entry points.

``reproduce.trainer.Trainer`` is the training loop, ``reproduce.presets`` the configurations
(``small`` on CPU, ``paper`` for Qwen2.5 on GSM8K) and the per-entry-point experiments,
``reproduce.measure`` the paired value/gradient-MSE protocol and accuracy curves, and
``reproduce.report`` the result files with provenance. ``python -m reproduce`` lists the entry points.
"""
