"""``python -m reproduce``: list the reproduction entry points."""

ENTRY_POINTS = {
    "reproduce.table1": "Table 1: value MSE of every estimator on paired policy paths, by training phase",
    "reproduce.table2": "Table 2: policy-gradient MSE vs batch size, each method as defined (README main job)",
    "reproduce.figure3": "Figure 3: value MSE versus bandwidth h and kernel",
    "reproduce.figure4": "Figure 4: single stream G = 1, held-out accuracy of KAE vs REINFORCE(++)",
    "reproduce.figureS1": "Figure S.1: KAE vs GRPO with the same prompt schedule",
    "reproduce.table3": "Table 3: final accuracy per method (MATH analogue) + benchmark evaluator",
    "reproduce.table4": "Table 4: final accuracy per method (DAPO analogue) + benchmark evaluator",
    "reproduce.evaluate": "Benchmark evaluator: mean@k / pass@k on AIME24/25, AMC23, MATH500, Minerva, OlympiadBench",
    "reproduce.trainer": "One plain RL training run",
    "reproduce.sweep": "The design sweep behind the small preset (RL learning vs a null control)",
    "reproduce.replication": "Do the verdicts survive a re-run? Claims recomputed from other result folders",
}


def main() -> None:
    width = max(map(len, ENTRY_POINTS))
    print("Entry points (each takes --preset small|paper, --device, --seeds, --out; see --help):")
    for name, what in ENTRY_POINTS.items():
        print(f"  python -m {name:<{width}}  {what}")


if __name__ == "__main__":
    main()
