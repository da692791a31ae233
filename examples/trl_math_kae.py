"""KAE with TRL on MATH: the paper's Table 3 setting (Qwen2.5-Math-7B, G = 4, J = 10, triangular kernel).

Untested here: this repository's CI has no GPU. What CI does check is that
every GRPOConfig key and value below is accepted by the installed TRL and that
the KAE options build the estimator (tests/test_integration_trl.py).

Install and launch (one node)::

    pip install "kernelvalue[trl]" "trl[vllm,deepspeed,math-verify]"
    accelerate launch --num_processes 8 --use_deepspeed --zero_stage 3 --mixed_precision bf16 \\
        examples/trl_math_kae.py --model Qwen/Qwen2.5-Math-7B --output-dir runs/kae-math-7b

Hardware (estimates from parameter counts, not measured): 7B needs one node
of 8 x 80 GB GPUs. Full fine-tuning keeps ~16 bytes per parameter of weights,
gradients and AdamW state (~120 GB for 7.6B parameters), sharded by ZeRO-3 to
~15 GB per GPU, plus vLLM's colocated share (``vllm_gpu_memory_utilization``
0.3 = 24 GB) and activations for 3000-token completions with gradient
checkpointing. ``--model Qwen/Qwen2.5-Math-1.5B`` fits 4 x 80 GB
(``--num_processes 4``; the per-device batch doubles, see below).

Settings: G = 4 and J = 10 are the paper's; the rest is ours, the same values
as ``reproduce.presets.PAPER_MATH`` (32 prompts per step, 300 steps, lr 1e-6,
no KL, temperature 1.0, 3000-token completions), since the paper does not
give them. One generation batch of 32 x 4 = 128 completions per optimiser step.
Stable keys: ``prompt_id`` = the row's index in MATH's train split.
"""

from __future__ import annotations

import argparse

# The paper's MATH setting; everything not marked "paper" is ours (as in reproduce.presets.PAPER_MATH).
G = 4  # paper
J = 10  # paper (MATH and GSM8K)
PROMPTS_PER_STEP = 32
STEPS = 300
KAE = {"estimator": "kae", "estimator_options": {"bandwidth": 0.2, "kernel": "triangular"}}  # kernel: paper
DATASET = "DigitalLearningGmbH/MATH-lighteval"  # MATH's 7,500 training problems, with boxed solutions
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def grpo_config_kwargs(output_dir: str, num_processes: int = 8) -> dict:
    """The GRPOConfig of the run (one generation batch = one optimiser step, on-policy)."""
    completions = PROMPTS_PER_STEP * G
    return {
        "output_dir": output_dir,
        "num_generations": G,
        "generation_batch_size": completions,
        "per_device_train_batch_size": completions // num_processes,
        "gradient_accumulation_steps": 1,
        "num_iterations": 1,
        "max_steps": STEPS,
        "learning_rate": 1e-6,
        "lr_scheduler_type": "constant",
        "beta": 0.0,
        "temperature": 1.0,
        "max_completion_length": 3000,
        "bf16": True,
        "gradient_checkpointing": True,
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "remove_unused_columns": False,  # keeps prompt_id (TRL's default, stated because KAE relies on it)
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "report_to": "none",
        "seed": 0,
    }


def load_math(split: str = "train"):
    """MATH's ``split`` from the Hugging Face hub, as :func:`to_prompts` rows."""
    from datasets import load_dataset

    return to_prompts(load_dataset(DATASET, split=split))


def to_prompts(ds):
    """Conversational prompts with a stable ``prompt_id`` (the row index) and the ``solution`` TRL's reward reads."""
    return ds.map(
        lambda row, i: {"prompt": [{"role": "user", "content": f"{row['problem']} {INSTRUCTION}"}], "prompt_id": i},
        with_indices=True,
        remove_columns=[c for c in ds.column_names if c != "solution"],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-Math-7B")
    parser.add_argument("--output-dir", default="runs/kae-math")
    parser.add_argument("--resume", default=None, help="a checkpoint-N folder of this run")
    args = parser.parse_args(argv)

    from accelerate import PartialState
    from trl import GRPOConfig
    from trl.rewards import accuracy_reward

    from kernelvalue.integrations.trl import KAEGRPOTrainer

    config = GRPOConfig(**grpo_config_kwargs(args.output_dir, PartialState().num_processes))
    trainer = KAEGRPOTrainer(
        args.model, accuracy_reward, args=config, train_dataset=load_math(), J=J, **KAE
    )  # was: GRPOTrainer(args.model, accuracy_reward, args=config, train_dataset=load_math())
    trainer.train(resume_from_checkpoint=args.resume)


if __name__ == "__main__":
    main()
