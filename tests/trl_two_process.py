"""Run by ``torchrun --nproc_per_node 2`` from test_integration_trl.py: KAEGRPOTrainer on 2 CPU processes (gloo).

Each rank trains the same tiny run, holding half of every generation batch, and
writes its estimator state and what it recorded to ``OUT/rank<r>.pt``.
"""

import sys

import torch

from trl_helpers import make_trainer

torch.set_num_threads(1)

out = sys.argv[1]
# 4 rows per process = 2 processes x 4 = 8 completions (4 prompts x G = 2) per step, as on one process.
trainer = make_trainer(out, per_device_train_batch_size=4, max_steps=6, ddp_backend="gloo")
trainer.train()
rank = trainer.accelerator.process_index
torch.save(
    {
        "world": trainer.accelerator.num_processes,
        "state": trainer.kae.estimator.state_dict(),
        "records": trainer.records,
    },
    f"{out}/rank{rank}.pt",
)
