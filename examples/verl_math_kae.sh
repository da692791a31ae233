#!/usr/bin/env bash
# KAE with verl 0.9 on MATH: the paper's Table 3 setting (Qwen2.5-Math-7B, G = 4, J = 10, triangular kernel).
#
# Untested here: this repository's CI has no GPU. What CI does check is that verl's Hydra config
# composes with every override below and passes verl's validate_config, and that the KAE options
# build the estimator and the schedule (tests/test_integration_verl.py, via --print-overrides).
#
# Install, prepare data, launch (one node):
#   pip install "kernelvalue[verl]" "verl[vllm]==0.9.1"      # verl's rollout engine for GPUs
#   python examples/data_preprocess/math_dataset.py --local_dir ~/data/math   # from verl's repository:
#       # writes data_source and extra_info.index, the (stable) prompt key KAE needs
#   bash examples/verl_math_kae.sh
#
# Hardware (estimates from parameter counts, not measured): 7B needs one node of 8 x 80 GB GPUs,
# the layout verl's own 7B GRPO examples use: FSDP shards ~16 bytes/parameter of weights, gradients
# and AdamW state (~120 GB for 7.6B parameters) to ~15 GB per GPU; vLLM takes
# gpu_memory_utilization = 0.5 of each GPU while generating (weights are offloaded in between).
# MODEL=Qwen/Qwen2.5-Math-1.5B N_GPUS=4 fits 4 x 80 GB.
#
# Settings: G = 4 and J = 10 are the paper's; the rest is ours, the values of
# reproduce.presets.PAPER_MATH (32 prompts per step, 300 steps, lr 1e-6, no KL, temperature 1.0,
# 3000-token responses), since the paper does not give them. One PPO update per step (on-policy).
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen2.5-Math-7B}
DATA=${DATA:-$HOME/data/math}
N_GPUS=${N_GPUS:-8}
OUT=${OUT:-checkpoints/kae-math}

OVERRIDES=(
    # The switch: kernelvalue's trainer mode (stable keys, the step, checkpointed state) and estimator.
    trainer.v1.trainer_mode=kae
    algorithm.adv_estimator=kae
    +algorithm.kae.kernel=triangular
    +algorithm.kae.bandwidth=0.2
    +trainer.v1.kae.J=10
    data.seed=0
    # MATH, 32 prompts x G = 4 responses per step.
    data.train_files="$DATA/train.parquet"
    data.val_files="$DATA/test.parquet"
    data.train_batch_size=32
    data.max_prompt_length=1024
    data.max_response_length=3000
    data.filter_overlong_prompts=True
    actor_rollout_ref.rollout.n=4
    actor_rollout_ref.rollout.temperature=1.0
    # Policy: full fine-tuning with FSDP, one update per step, no KL.
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=32
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4
    actor_rollout_ref.actor.ppo_epochs=1
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.actor.entropy_coeff=0
    algorithm.use_kl_in_reward=False
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.tensor_model_parallel_size=2
    actor_rollout_ref.rollout.gpu_memory_utilization=0.5
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8
    # Run: 300 steps (verl's epochs count len(data) / 32 steps; with J = 10 a pass takes 10 of them).
    trainer.total_training_steps=300
    trainer.n_gpus_per_node="$N_GPUS"
    trainer.nnodes=1
    trainer.save_freq=50
    trainer.test_freq=50
    trainer.default_local_dir="$OUT"
    trainer.project_name=kernelvalue
    trainer.experiment_name=kae-math
    trainer.logger='["console"]'
)

if [[ "${1:-}" == "--print-overrides" ]]; then
    printf '%s\n' "${OVERRIDES[@]}"
    exit 0
fi
python3 -m verl.trainer.main_ppo "${OVERRIDES[@]}" "$@"
