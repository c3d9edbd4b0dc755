#!/usr/bin/env python3
"""Writes dataset.csv: two interleaving noisy half-moons, 400 rows, always the same.

The problem is not linearly separable, so a hidden layer has something to learn,
and the fixed seed keeps the committed CSV reproducible:

    python3 make_dataset.py > dataset.csv
"""
import math
import random
import sys

ROWS = 400
NOISE = 0.15
SEED = 7


def main() -> None:
    rng = random.Random(SEED)
    out = sys.stdout
    out.write("x1,x2,label\n")
    for i in range(ROWS):
        label = i % 2
        t = rng.uniform(0.0, math.pi)
        if label == 0:
            x1, x2 = math.cos(t), math.sin(t)
        else:
            x1, x2 = 1.0 - math.cos(t), 0.5 - math.sin(t)
        x1 += rng.gauss(0.0, NOISE)
        x2 += rng.gauss(0.0, NOISE)
        out.write(f"{x1:.5f},{x2:.5f},{label}\n")


if __name__ == "__main__":
    main()
