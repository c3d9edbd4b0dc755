#!/usr/bin/env python3
"""GPU-Agent example: a tiny MLP on a 2-D two-class dataset, in three stages.

    python3 train.py --stage prepare    reads $GPU_AGENT_DATASET (CSV x1,x2,label),
                                        writes prepared.csv + dataset-stats.json
    python3 train.py --stage train      reads $GPU_AGENT_INPUT_DIR/prepared.csv,
                                        writes model.ckpt + metrics.json
    python3 train.py --stage evaluate   reads model.ckpt + prepared.csv from
                                        $GPU_AGENT_INPUT_DIR, writes eval-metrics.json

Outputs go to $GPU_AGENT_OUTPUT_DIR. Progress is reported to the agent with
lines of the form `@@gpu-agent {"progress": 0.5, "metrics": {...}}` on stdout.
Bad input exits with status 2 and a message on stderr.

`train` writes a checkpoint after every epoch into $GPU_AGENT_CHECKPOINT_DIR
(epoch-N.ckpt: the weights and the shuffle's random state) and names it on that
epoch's progress line ("checkpoint": "epoch-N.ckpt"); the agent uploads it. An
attempt placed again after its node failed finds the latest one in
$GPU_AGENT_RESUME_DIR and continues after its epoch, with the same result as a
run that was never interrupted.
"""
import argparse
import csv
import json
import math
import os
import random
import sys
import time

from mlp import MLP

HIDDEN_UNITS = 8
LEARNING_RATE = 0.1
TEST_EVERY = 5  # every 5th row goes to the test split


class InputError(Exception):
    """The customer's data or the previous stage's output is unusable."""


def report(progress: float, checkpoint: str = "", **metrics: float) -> None:
    line = {"progress": progress}
    if metrics:
        line["metrics"] = metrics
    if checkpoint:
        line["checkpoint"] = checkpoint
    print("@@gpu-agent " + json.dumps(line), flush=True)


CHECKPOINT_FORMAT = "tiny-mlp-checkpoint/v1"
CHECKPOINTS_KEPT = 2  # older ones are removed; the agent has uploaded them or replaced them with a newer one


def save_checkpoint(ckpt_dir: str, epoch: int, model: MLP, rng: random.Random, order: list) -> str:
    """Writes epoch-N.ckpt atomically (a reader never sees half a file) and returns its name."""
    name = f"epoch-{epoch}.ckpt"
    version, state, gauss = rng.getstate()
    temp = os.path.join(ckpt_dir, f".{name}.partial")
    with open(temp, "w", encoding="utf-8") as f:
        json.dump({"format": CHECKPOINT_FORMAT, "epoch": epoch, "weights": model.to_dict(), "rng": [version, list(state), gauss], "order": order}, f)
    os.replace(temp, os.path.join(ckpt_dir, name))
    stale = os.path.join(ckpt_dir, f"epoch-{epoch - CHECKPOINTS_KEPT}.ckpt")
    if os.path.exists(stale):
        os.remove(stale)
    return name


def load_resume(resume_dir: str):
    """(epoch, model, rng, order) from the checkpoint in $GPU_AGENT_RESUME_DIR, or None for a fresh start."""
    names = sorted(n for n in os.listdir(resume_dir) if n.endswith(".ckpt")) if resume_dir and os.path.isdir(resume_dir) else []
    if not names:
        return None
    path = os.path.join(resume_dir, names[-1])
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a {CHECKPOINT_FORMAT} file")
        rng = random.Random()
        version, state, gauss = saved["rng"]
        rng.setstate((version, tuple(state), gauss))
        return int(saved["epoch"]), MLP.from_dict(saved["weights"]), rng, [int(i) for i in saved["order"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"checkpoint {names[-1]} cannot be resumed from: {e}")


def env_path(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise InputError(f"environment variable {name} is not set")
    return value


def write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def read_rows(path: str, header: list) -> list:
    """Rows of a CSV whose header must be exactly `header`; numbers parsed."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            got = next(reader, None)
            if got is None or [h.strip() for h in got] != header:
                raise InputError(f"{os.path.basename(path)}: header must be {','.join(header)}, got {got}")
            rows = []
            for n, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise InputError(f"{os.path.basename(path)} line {n}: expected {len(header)} columns, got {len(row)}")
                rows.append((n, row))
            return rows
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}")
    except UnicodeDecodeError:
        raise InputError(f"{os.path.basename(path)} is not UTF-8 text")


def parse_float(value: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a number")
    if not math.isfinite(x):
        raise InputError(f"{where}: {value!r} is not a finite number")
    return x


def parse_label(value: str, where: str) -> int:
    if value.strip() not in ("0", "1"):
        raise InputError(f"{where}: label must be 0 or 1, got {value!r}")
    return int(value)


def load_prepared(path: str):
    """(train, test) lists of ((x1, x2), label) from prepared.csv."""
    train, test = [], []
    for n, row in read_rows(path, ["x1", "x2", "label", "split"]):
        where = f"prepared.csv line {n}"
        sample = ((parse_float(row[0], where), parse_float(row[1], where)), parse_label(row[2], where))
        if row[3] == "train":
            train.append(sample)
        elif row[3] == "test":
            test.append(sample)
        else:
            raise InputError(f"{where}: split must be train or test")
    if not train or not test:
        raise InputError("prepared.csv must contain both train and test rows")
    return train, test


def stage_prepare(out_dir: str) -> None:
    path = env_path("GPU_AGENT_DATASET")
    raw = read_rows(path, ["x1", "x2", "label"])
    samples = []
    for n, row in raw:
        where = f"dataset line {n}"
        samples.append((parse_float(row[0], where), parse_float(row[1], where), parse_label(row[2], where)))
    if len(samples) < 20:
        raise InputError(f"dataset has {len(samples)} rows; at least 20 are needed")
    counts = {0: sum(1 for s in samples if s[2] == 0), 1: sum(1 for s in samples if s[2] == 1)}
    if counts[0] == 0 or counts[1] == 0:
        raise InputError("dataset must contain both labels 0 and 1")
    report(0.3)

    means, stds = [], []
    for col in (0, 1):
        values = [s[col] for s in samples]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        if std == 0:
            raise InputError(f"feature x{col + 1} is constant; it cannot be standardised")
        means.append(mean)
        stds.append(std)

    with open(os.path.join(out_dir, "prepared.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["x1", "x2", "label", "split"])
        for i, (x1, x2, label) in enumerate(samples):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
            writer.writerow([f"{(x1 - means[0]) / stds[0]:.6f}", f"{(x2 - means[1]) / stds[1]:.6f}", label, split])
    write_json(
        os.path.join(out_dir, "dataset-stats.json"),
        {
            "rows": len(samples),
            "label_counts": {"0": counts[0], "1": counts[1]},
            "mean": {"x1": means[0], "x2": means[1]},
            "std": {"x1": stds[0], "x2": stds[1]},
            "test_every": TEST_EVERY,
        },
    )
    print(f"prepared {len(samples)} rows (labels 0: {counts[0]}, 1: {counts[1]})")
    report(1.0, rows=len(samples))


def stage_train(in_dir: str, out_dir: str, epochs: int, min_epoch_seconds: float) -> None:
    train, test = load_prepared(os.path.join(in_dir, "prepared.csv"))
    model = MLP(inputs=2, hidden=HIDDEN_UNITS, seed=42)
    # A fixed shuffle order per epoch keeps runs reproducible.
    rng = random.Random(1)
    order = list(range(len(train)))
    first_epoch = 1
    resumed = load_resume(os.environ.get("GPU_AGENT_RESUME_DIR", ""))
    if resumed is not None:
        saved_epoch, model, rng, order = resumed
        if sorted(order) != list(range(len(train))):
            raise InputError("the checkpoint's sample order does not match prepared.csv")
        first_epoch = saved_epoch + 1
        print(f"resuming from epoch {saved_epoch}", flush=True)
    ckpt_dir = os.environ.get("GPU_AGENT_CHECKPOINT_DIR", "")
    loss, accuracy = 0.0, 0.0
    for epoch in range(first_epoch, epochs + 1):
        started = time.monotonic()
        rng.shuffle(order)
        total = 0.0
        for i in order:
            x, label = train[i]
            total += model.step(x, label, LEARNING_RATE)
        loss = total / len(train)
        _, accuracy = model.evaluate(train)
        print(f"epoch {epoch}/{epochs} loss={loss:.4f} accuracy={accuracy:.3f}")
        checkpoint = save_checkpoint(ckpt_dir, epoch, model, rng, order) if ckpt_dir else ""
        report(epoch / epochs, checkpoint, epoch=epoch, loss=round(loss, 6), accuracy=round(accuracy, 6))
        # The real work takes milliseconds; pausing keeps progress visible in a demo.
        pause = min_epoch_seconds - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
    test_loss, test_accuracy = model.evaluate(test)
    with open(os.path.join(out_dir, "model.ckpt"), "w", encoding="utf-8") as f:
        json.dump({"format": "tiny-mlp/v1", "hidden_units": HIDDEN_UNITS, "weights": model.to_dict()}, f)
    write_json(
        os.path.join(out_dir, "metrics.json"),
        {
            "epochs": epochs,
            "train_loss": loss,
            "train_accuracy": accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        },
    )


def stage_evaluate(in_dir: str, out_dir: str) -> None:
    ckpt = os.path.join(in_dir, "model.ckpt")
    try:
        with open(ckpt, encoding="utf-8") as f:
            saved = json.load(f)
    except FileNotFoundError:
        raise InputError(f"input file not found: {ckpt}")
    except json.JSONDecodeError as e:
        raise InputError(f"model.ckpt is not valid JSON: {e}")
    if not isinstance(saved, dict) or saved.get("format") != "tiny-mlp/v1":
        raise InputError("model.ckpt is not a tiny-mlp/v1 checkpoint")
    try:
        model = MLP.from_dict(saved.get("weights"))
    except (ValueError, TypeError) as e:
        raise InputError(f"model.ckpt: {e}")
    _, test = load_prepared(os.path.join(in_dir, "prepared.csv"))
    loss, accuracy = model.evaluate(test)
    write_json(os.path.join(out_dir, "eval-metrics.json"), {"test_rows": len(test), "loss": loss, "accuracy": accuracy})
    print(f"evaluated {len(test)} test rows: accuracy={accuracy:.3f}")
    report(1.0, loss=round(loss, 6), accuracy=round(accuracy, 6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=["prepare", "train", "evaluate"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--min-epoch-seconds", type=float, default=0.2, help="pause so one epoch takes at least this long")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        out_dir = env_path("GPU_AGENT_OUTPUT_DIR")
        os.makedirs(out_dir, exist_ok=True)
        if args.stage == "prepare":
            stage_prepare(out_dir)
        elif args.stage == "train":
            stage_train(env_path("GPU_AGENT_INPUT_DIR"), out_dir, args.epochs, args.min_epoch_seconds)
        else:
            stage_evaluate(env_path("GPU_AGENT_INPUT_DIR"), out_dir)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
