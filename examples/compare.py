"""The full comparison (teacher, student alone, KD, FitNets, AT, SMLDist and its ablations, over
seeds) as a script; the same as ``tinysml compare`` (the logic is ``tinysml/compare.py``).

    python examples/compare.py --dataset uci-har --seeds 0 1 2 --out runs/compare --doc docs/results.md
"""
from tinysml.compare import main

if __name__ == "__main__":
    main()
