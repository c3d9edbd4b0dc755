#!/usr/bin/env python3
"""Runs the torch-sweep package as the agent runs its units, with a real PyTorch, and checks checkpoint/resume.

    python3 examples/torch-sweep/check_resume.py --python /path/to/venv/bin/python3
    python3 examples/torch-sweep/check_resume.py --find-links /srv/wheels     installs torch into a temporary venv
                                                                              from that wheelhouse only (torch and its
                                                                              dependencies: `pip download -d DIR torch`)

1. `prepare` on ../tiny-mlp/dataset.csv, then `train` (replica 0 of 2, on the CPU unless CUDA is there)
   uninterrupted;
2. `train` again, killed with SIGKILL right after it announced the checkpoint of its third reported epoch
   (`--kill-after`); that file is copied out when announced, as the agent copies it;
3. a second attempt with only that file in $GPU_AGENT_RESUME_DIR.

It checks that the second attempt says where it resumed, that no reported epoch runs twice across the two
attempts and none is missing, and that the resumed run ends with exactly the uninterrupted run's loss, accuracy
and weights (bit for bit). Prints one JSON line; exits 1 when a check fails. Not part of `npm test`: it needs
PyTorch, which CI machines do not have.

Each unit gets the environment the agent gives it with `--isolation none` (cwd the package directory,
GPU_AGENT_* naming host directories, nothing else inherited but PATH).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "package")
DATASET = os.path.join(HERE, "..", "tiny-mlp", "dataset.csv")
PREFIX = "@@gpu-agent "


def unit_env(python, work, stage, inputs):
    for name in ("output", "checkpoints", "resume"):
        os.makedirs(os.path.join(work, name), exist_ok=True)
    return {
        "PATH": os.path.dirname(python) + ":/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": work,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "GPU_AGENT_STAGE": stage,
        "GPU_AGENT_UNIT_ID": "check-resume",
        "GPU_AGENT_ATTEMPT": "1",
        "GPU_AGENT_JOB_ID": "check-resume",
        "GPU_AGENT_DATASET": os.path.abspath(DATASET),
        "GPU_AGENT_PACKAGE_DIR": PACKAGE,
        "GPU_AGENT_INPUT_DIR": inputs,
        "GPU_AGENT_OUTPUT_DIR": os.path.join(work, "output"),
        "GPU_AGENT_CHECKPOINT_DIR": os.path.join(work, "checkpoints"),
        "GPU_AGENT_RESUME_DIR": os.path.join(work, "resume"),
    }


def run_unit(python, work, stage, args, inputs, kill_after_epoch=None, saved=None):
    """Runs one unit; returns (exit code, progress reports, other stdout lines, stderr). With kill_after_epoch,
    copies the checkpoint announced at that epoch into `saved` and SIGKILLs the unit at once."""
    proc = subprocess.Popen(
        [python, os.path.join(PACKAGE, "train.py"), *args],
        cwd=PACKAGE,
        env=unit_env(python, work, stage, inputs),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports, lines = [], []
    for line in proc.stdout:
        line = line.rstrip("\n")
        if not line.startswith(PREFIX):
            lines.append(line)
            continue
        report = json.loads(line[len(PREFIX):])
        reports.append(report)
        if kill_after_epoch is not None and report.get("metrics", {}).get("epoch") == kill_after_epoch:
            shutil.copy(os.path.join(work, "checkpoints", report["checkpoint"]), saved)
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    stderr = proc.stderr.read()
    return proc.wait(), reports, lines, stderr


def reported_epochs(reports):
    return [r["metrics"]["epoch"] for r in reports]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def same_weights(python, a, b):
    code = "import sys, torch\nx, y = torch.load(sys.argv[1]), torch.load(sys.argv[2])\n" \
           "print(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x))"
    return subprocess.run([python, "-c", code, a, b], capture_output=True, text=True, check=True).stdout.strip() == "True"


def venv_with_torch(wheelhouses, where):
    python = os.path.join(where, "bin", "python3")
    subprocess.run([sys.executable, "-m", "venv", where], check=True)
    started = time.monotonic()
    sources = [arg for d in wheelhouses for arg in ("--find-links", d)]
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--only-binary", ":all:", *sources,
                    "-r", os.path.join(PACKAGE, "requirements.txt")], check=True)
    return python, round(time.monotonic() - started, 1)


def main():
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--python", help="an interpreter that has torch")
    source.add_argument("--find-links", action="append", help="a wheelhouse to install the package's requirements "
                        "from into a temporary venv (repeatable)")
    parser.add_argument("--replica", type=int, default=0)
    parser.add_argument("--kill-after", type=int, default=60, help="the reported epoch after which attempt 1 is killed")
    options = parser.parse_args()

    root = tempfile.mkdtemp(prefix="torch-sweep-resume-")
    checks, summary = {}, {}
    try:
        python = options.python
        if python is None:
            python, summary["torch_install_seconds"] = venv_with_torch(options.find_links, os.path.join(root, "venv"))
        train_args = ["--stage", "train", "--replica", str(options.replica), "--replicas", "2", "--allow-cpu"]
        prepared = os.path.join(root, "prepare")
        code, _, _, err = run_unit(python, prepared, "prepare", ["--stage", "prepare"], os.path.join(prepared, "inputs"))
        if code != 0:
            raise SystemExit(f"prepare failed ({code}): {err}")
        inputs = os.path.join(prepared, "output")

        started = time.monotonic()
        code, full_reports, _, err = run_unit(python, os.path.join(root, "full"), "train", train_args, inputs)
        summary["uninterrupted_seconds"] = round(time.monotonic() - started, 1)
        if code != 0:
            raise SystemExit(f"uninterrupted train failed ({code}): {err}")
        full_result = read_json(os.path.join(root, "full", "output", f"result-{options.replica}.json"))

        saved = os.path.join(root, "announced.pt")
        code, first_reports, _, _ = run_unit(
            python, os.path.join(root, "attempt-1"), "train", train_args, inputs, options.kill_after, saved)
        checks["attempt_1_killed"] = code == -signal.SIGKILL

        resumed_work = os.path.join(root, "attempt-2")
        os.makedirs(os.path.join(resumed_work, "resume"))
        shutil.copy(saved, os.path.join(resumed_work, "resume", os.path.basename(first_reports[-1]["checkpoint"])))
        code, second_reports, second_lines, err = run_unit(python, resumed_work, "train", train_args, inputs)
        if code != 0:
            raise SystemExit(f"resumed train failed ({code}): {err}")
        resumed_result = read_json(os.path.join(resumed_work, "output", f"result-{options.replica}.json"))

        first, second = reported_epochs(first_reports), reported_epochs(second_reports)
        resume_lines = [l for l in second_lines if l.startswith("resuming from epoch")]
        checks["says_where_it_resumed"] = resume_lines == [f"resuming from epoch {options.kill_after}"]
        checks["no_epoch_twice"] = not set(first) & set(second)
        checks["no_epoch_missing"] = first + second == reported_epochs(full_reports)
        checks["same_reports_after_resume"] = second_reports == full_reports[len(first):]
        checks["same_final_loss"] = resumed_result["final_loss"] == full_result["final_loss"]
        checks["same_accuracy"] = resumed_result["accuracy"] == full_result["accuracy"]
        checks["same_weights"] = same_weights(
            python,
            os.path.join(root, "full", "output", f"model-{options.replica}.pt"),
            os.path.join(resumed_work, "output", f"model-{options.replica}.pt"),
        )
        summary.update({
            "ok": all(checks.values()),
            "checks": checks,
            "torch": full_result["torch"],
            "device": full_result["device"],
            "attempt_1_epochs": first,
            "attempt_2_epochs": second,
            "resume_line": resume_lines,
            "uninterrupted": {k: full_result[k] for k in ("final_loss", "accuracy", "learning_rate")},
            "resumed": {k: resumed_result[k] for k in ("final_loss", "accuracy", "resumed_from_epoch")
                        if k in resumed_result},
        })
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary))
    return 0 if summary.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
