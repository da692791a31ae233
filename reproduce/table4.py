"""Table 4: the Table 3 protocol on the DAPO-17k analogue.

``python -m reproduce.table4 [--preset small|paper] [--seeds 0 1 ... 7] [--device auto] [--out results]``

The paper's Table 4 trains Qwen2.5-Math-7B on DAPO-17k, a training set about
2.3x larger than MATH, with GRPO, Dr. GRPO, GPG and KAE, and reports the average
accuracy over the same six benchmarks. The small analogue keeps the task, the
warm start and every training setting of :mod:`reproduce.table3` and enlarges
the RL prompt pool from 256 to 1024 prompts, so each prompt recurs less often
during training (KAE's history per prompt is shorter). Outputs:
``results/table4.csv``, ``results/table4.data.csv``, ``results/table4.benchmarks.csv``,
``results/table4.md``, ``figures/table4.png``.

``--preset paper`` runs the paper path of :mod:`reproduce.table3` on DAPO-17k
(needs ``--model``, ``--train-data`` and a GPU). Prefer the de-duplicated
``open-r1/DAPO-Math-17k-Processed`` (fields ``prompt`` and ``solution``, the
final answer), e.g. ``--train-data hf:open-r1/DAPO-Math-17k-Processed:train:en``
or a local JSONL export of it; the original ``BytedTsinghua-SIA/DAPO-Math-17k``
repeats each problem ~100 times but loads too (chat-message prompts and
``reward_model.ground_truth`` are read by default). DAPO's own "Answer:
$Answer" wrapper is stripped from prompts (:func:`reproduce.tasks.load_math`),
so only the ``\\boxed{}`` instruction remains.
"""

from __future__ import annotations

from .table3 import main as _main

NAME = "table4"


def main(argv=None):
    """Run Table 4 (see :func:`reproduce.table3.main`)."""
    return _main(argv, name=NAME)


if __name__ == "__main__":
    main()
