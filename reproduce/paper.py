"""The paper's own reported numbers, shown beside ours in every result file.

Source: ``../shared/paper.md`` (facts gathered from the abstract and third-party
summaries of arXiv 2604.28005; no official code). These are the paper's
numbers, never ours: result files print them under "Paper" with this caveat.
"""

CITATION = (
    "Gong, Ye, Zhu, Zhang, Zhou, Shi. Kernelized Advantage Estimation: From Nonparametric "
    "Statistics to LLM Reasoning. arXiv 2604.28005 (2026)."
)
CAVEAT = (
    "Paper numbers come from summaries of the paper (../shared/paper.md); units of Table 1 "
    "are uncertain there. They are for Qwen2.5 models on GSM8K/MATH/DAPO, not our small preset."
)

TABLE1 = {
    "setting": "Qwen2.5-Math on MATH and Qwen2.5 on GSM8K, value MSE (most likely in units of 1e-3)",
    "rows": {
        "MATH, step 10": {"GRPO": 19.4, "KAE": 5.80, "REINFORCE++": 78.8},
        "MATH, step 90": {"GRPO": 8.62, "KAE": 2.67},
        "MATH, step 170": {"GRPO": 5.07, "KAE": 1.45},
        "GSM8K, step 170": {"GRPO": 2.50, "KAE": 0.91},
    },
    "claim": "KAE cuts value MSE 60-73% vs GRPO and >90% vs REINFORCE++; the reduction grows as histories grow.",
    "reduction_vs_grpo": (0.60, 0.73),
    "reduction_vs_reinforcepp": 0.90,
}

TABLE2 = {
    "claim": "KAE cuts gradient MSE 5.4-8.5% vs GRPO and 32.6-65.4% vs REINFORCE++. Theorem 2: "
    "MSE(g_KAE) = MSE(g_oracle) + O(MSE(V_hat)/B), B = prompts per batch.",
    "reduction_vs_grpo": (0.054, 0.085),
    "reduction_vs_reinforcepp": (0.326, 0.654),
}

BENCHMARK_ORDER = ("aime24", "aime25", "amc2023", "math500", "minervamath", "olympiadbench")

TABLE3 = {
    "setting": "Qwen2.5-Math-7B trained on MATH; average accuracy over AIME24, AIME25, AMC23, MATH500, Minerva, OlympiadBench",
    "average": {"GRPO": 40.10, "Dr.GRPO": 39.91, "GPG": 40.33, "KAE": 41.49},
}

TABLE4 = {
    "setting": "Qwen2.5-Math-7B trained on DAPO-17k; same six benchmarks",
    "average": {"GRPO": 42.88, "Dr.GRPO": 40.92, "GPG": 43.49, "KAE": 44.54},
    "note": "With G = 4, AIME25 accuracy 0.1781 for KAE (+27.6% vs GPG).",
}

FIGURE3 = {"claim": "Value MSE is robust to h and kernel (triangular vs exponential); KAE stays below GRPO and REINFORCE++."}
FIGURE4 = {
    "claim": "Single stream (G = 1): REINFORCE's accuracy degrades while KAE keeps improving.",
    "final_gain": {"GSM8K": 0.149, "MATH": 0.066},
}
FIGURES1 = {"claim": "KAE vs GRPO with the same prompt schedule: KAE leads after ~30 steps."}
