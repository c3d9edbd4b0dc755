#!/usr/bin/env python3
"""GPU-Agent example: a learning-rate sweep of a small PyTorch MLP on the GPU.

    python3 train.py --stage prepare                      reads $GPU_AGENT_DATASET (CSV x1,x2,label),
                                                          writes prepared.pt
    python3 train.py --stage train --replica I --replicas N
                                                          trains with the I-th learning rate of the sweep
                                                          on the GPU the agent exposes, writes
                                                          model-I.pt + result-I.json
    python3 train.py --stage train ... --epochs E          the same for E full-batch epochs (default 200)
    python3 train.py --stage select                       reads every result-*.json, writes best.json

The `train` replicas run on whatever GPU the agent gave them through CUDA_VISIBLE_DEVICES; each writes what it
saw (device name, visible devices, torch and CUDA versions, wall time) into its result so the customer can check
where the work ran. Without CUDA the stage refuses to run unless `--allow-cpu` is given: a GPU unit that
silently trains on the CPU would be billed as GPU time for CPU work.

Each reported epoch of `train` (every 20 of its full-batch epochs, and the last) writes a checkpoint into
$GPU_AGENT_CHECKPOINT_DIR (replica-I-epoch-N.pt: model, optimizer, random number generators, epoch and that
epoch's loss and accuracy) and names it on its progress line ("checkpoint": ...); the agent uploads it. An
attempt placed again after its node failed finds the latest in $GPU_AGENT_RESUME_DIR, prints "resuming from
epoch N" and continues from there, ending with the same weights, loss and accuracy as a run never interrupted
(deterministic algorithms; `../check_resume.py` checks it with a real PyTorch).
"""
import argparse
import csv
import glob
import json
import os
import pickle
import sys
import time
import warnings

# Wheels of torch warn on import when numpy is missing, into every unit's log; nothing here uses numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
# cuBLAS is deterministic only with a fixed workspace; read when CUDA starts, so set before torch is imported.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
from torch import nn

LEARNING_RATES = [0.3, 0.03, 0.003, 0.0003]
EPOCHS = 200


def report(progress, checkpoint="", **metrics):
    line = {"progress": progress}
    if metrics:
        line["metrics"] = metrics
    if checkpoint:
        line["checkpoint"] = checkpoint
    print("@@gpu-agent " + json.dumps(line), flush=True)


def checkpoint_epoch(path):
    """N of replica-I-epoch-N.pt (-1 for any other name)."""
    stem = os.path.basename(path)[:-3]
    number = stem.rsplit("-", 1)[-1]
    return int(number) if stem.startswith("replica-") and number.isdigit() else -1


def save_checkpoint(replica, lr, epoch, model, optimizer, loss, accuracy):
    """Writes replica-I-epoch-N.pt atomically into $GPU_AGENT_CHECKPOINT_DIR; returns its name ("" outside the agent).

    The loss and accuracy go with it so that an attempt resuming from the last epoch, which trains no further,
    still reports the run's; the random number generators so that anything random after a resume (nothing in
    this full-batch loop today) draws what the uninterrupted run would have drawn."""
    ckpt_dir = os.environ.get("GPU_AGENT_CHECKPOINT_DIR", "")
    if not ckpt_dir:
        return ""
    name = f"replica-{replica}-epoch-{epoch}.pt"
    temp = os.path.join(ckpt_dir, f".{name}.partial")
    state = {
        "replica": replica,
        "learning_rate": lr,
        "epoch": epoch,
        "loss": loss,
        "accuracy": accuracy,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(state, temp)
    os.replace(temp, os.path.join(ckpt_dir, name))
    # Keep the two latest: the agent copies a checkpoint out before it uploads it.
    for old in glob.glob(os.path.join(ckpt_dir, f"replica-{replica}-epoch-*.pt")):
        if checkpoint_epoch(old) < epoch - 20:
            os.remove(old)
    return name


def resume(replica, lr, epochs, model, optimizer, device):
    """Loads the latest checkpoint in $GPU_AGENT_RESUME_DIR into model, optimizer and random number generators;
    returns (its epoch, loss, accuracy), or (0, nan, nan) for a fresh start."""
    resume_dir = os.environ.get("GPU_AGENT_RESUME_DIR", "")
    found = glob.glob(os.path.join(resume_dir, "replica-*-epoch-*.pt")) if resume_dir else []
    if not found:
        return 0, float("nan"), float("nan")
    # By epoch, not by name: "epoch-100" sorts before "epoch-20".
    path = max(found, key=checkpoint_epoch)
    try:
        saved = torch.load(path, map_location=device)
        mismatch = [k for k, v in (("replica", replica), ("learning_rate", lr)) if saved[k] != v]
        if mismatch or not 0 < saved["epoch"] <= epochs:
            raise ValueError(f"it is of replica {saved['replica']}, learning rate {saved['learning_rate']}, epoch "
                             f"{saved['epoch']}; this run is replica {replica}, learning rate {lr}, {epochs} epochs")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["cpu_rng"])
        if saved["cuda_rng"] and device.type == "cuda":
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
    except (KeyError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        print(f"cannot resume from {os.path.basename(path)}: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"resuming from epoch {saved['epoch']}", flush=True)
    return int(saved["epoch"]), float(saved["loss"]), float(saved["accuracy"])


def out_path(name):
    return os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], name)


def in_path(name):
    return os.path.join(os.environ["GPU_AGENT_INPUT_DIR"], name)


def prepare():
    xs, ys = [], []
    with open(os.environ["GPU_AGENT_DATASET"], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["x1", "x2", "label"]:
            print(f"dataset header must be x1,x2,label, got {header}", file=sys.stderr)
            sys.exit(2)
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                xs.append([float(row[0]), float(row[1])])
                ys.append([float(row[2])])
            except (ValueError, IndexError):
                print(f"dataset line {n}: expected three numbers, got {row}", file=sys.stderr)
                sys.exit(2)
    x = torch.tensor(xs)
    x = (x - x.mean(0)) / x.std(0)
    torch.save({"x": x, "y": torch.tensor(ys)}, out_path("prepared.pt"))
    report(1.0, rows=len(xs))


def train(replica, replicas, allow_cpu, epochs):
    if not torch.cuda.is_available() and not allow_cpu:
        print("no CUDA device visible (CUDA_VISIBLE_DEVICES=%r)" % os.environ.get("CUDA_VISIBLE_DEVICES"), file=sys.stderr)
        sys.exit(3)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # An attempt that resumes must compute exactly what the uninterrupted run did; warn_only: an operation with
    # no deterministic kernel on some device warns instead of failing the unit.
    torch.use_deterministic_algorithms(True, warn_only=True)
    lr = LEARNING_RATES[replica % len(LEARNING_RATES)]
    data = torch.load(in_path("prepared.pt"))
    x, y = data["x"].to(device), data["y"].to(device)
    torch.manual_seed(replica)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    started = time.monotonic()
    resumed_from, loss, accuracy = resume(replica, lr, epochs, model, optimizer, device)
    for epoch in range(resumed_from + 1, epochs + 1):
        optimizer.zero_grad()
        batch_loss = loss_fn(model(x), y)
        batch_loss.backward()
        optimizer.step()
        if epoch % 20 == 0 or epoch == epochs:
            loss = batch_loss.item()
            with torch.no_grad():
                accuracy = ((model(x) > 0).float() == y).float().mean().item()
            checkpoint = save_checkpoint(replica, lr, epoch, model, optimizer, loss, accuracy)
            report(epoch / epochs, checkpoint, epoch=epoch, loss=round(loss, 5), accuracy=round(accuracy, 4))
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = {
        "replica": replica,
        "replicas": replicas,
        "learning_rate": lr,
        "final_loss": loss,
        "accuracy": accuracy,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "train_seconds": round(time.monotonic() - started, 3),
        "resumed_from_epoch": resumed_from,
    }
    torch.save(model.state_dict(), out_path(f"model-{replica}.pt"))
    with open(out_path(f"result-{replica}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    print(json.dumps(result), flush=True)


def select():
    results = []
    for path in sorted(glob.glob(in_path("result-*.json"))):
        with open(path, encoding="utf-8") as f:
            results.append(json.load(f))
    if not results:
        print("no result-*.json from the train stage", file=sys.stderr)
        sys.exit(2)
    best = min(results, key=lambda r: r["final_loss"])
    with open(out_path("best.json"), "w", encoding="utf-8") as f:
        json.dump({"best": best, "all": results}, f, indent=2, sort_keys=True)
    report(1.0, best_learning_rate=best["learning_rate"], best_loss=round(best["final_loss"], 5))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", required=True, choices=["prepare", "train", "select"])
    parser.add_argument("--replica", type=int, default=0)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    if args.stage == "prepare":
        prepare()
    elif args.stage == "train":
        train(args.replica, args.replicas, args.allow_cpu, args.epochs)
    else:
        select()


if __name__ == "__main__":
    main()
