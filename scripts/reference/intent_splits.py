"""The seeded, stratified splits the intent figures in docs/benchmarks.md use.

    python3 scripts/reference/intent_splits.py ../shared/data /tmp/intent

writes b77_train.csv / b77_test.csv (90/10 of each BANKING77 intent) and
ko_train.csv (b77_train + half of each intent's Korean demo messages) /
ko_test.csv (the other half). Standard library only.
"""
import csv
import random
import sys
from collections import defaultdict
from pathlib import Path


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["text"], r["intent"]) for r in csv.DictReader(f)]


def split(rows, held_out, seed):
    by_intent = defaultdict(list)
    for row in rows:
        by_intent[row[1]].append(row)
    rng = random.Random(seed)
    train, test = [], []
    for intent in sorted(by_intent):
        group = by_intent[intent][:]
        rng.shuffle(group)
        n = max(1, round(len(group) * held_out))
        test += group[:n]
        train += group[n:]
    return train, test


def write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "intent"])
        w.writerows(rows)


def main():
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    b_train, b_test = split(read(data / "banking77/train.csv"), 0.10, seed=77)
    k_train, k_test = split(read(data / "demo-bank/queries_ko_dev.csv"), 0.5, seed=82)
    write(out / "b77_train.csv", b_train)
    write(out / "b77_test.csv", b_test)
    write(out / "ko_train.csv", b_train + k_train)
    write(out / "ko_test.csv", k_test)
    for name, rows in [("b77_train", b_train), ("b77_test", b_test), ("ko_train", b_train + k_train), ("ko_test", k_test)]:
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
