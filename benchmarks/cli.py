"""CLI speed, measured against a peer in the same run (these machines are noisy: compare, don't trust
absolute numbers).

- `agentgen --help` wall time (target: median <= 0.15 s), next to `python -c pass` as the floor;
- `agentgen new --no-input` (all targets of issue #2, validators included) vs `copier copy` of the same
  template with the same answers (target: new <= copier copy + 0.3 s).

Run: .venv/bin/python benchmarks/cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ANSWERS = {"name": "bench", "scale": "large", "targets": ["compose", "langgraph-platform"],
           "secrets": "vault"}


def timed(cmd: list[str], runs: int, before=None) -> list[float]:
    times = []
    for _ in range(runs):
        if before:
            before()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def row(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"  {label:<34} median {median * 1000:7.1f} ms   min {min(times) * 1000:7.1f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentgen-bench-"))
    dest = work / "out"

    def clean() -> None:
        shutil.rmtree(dest, ignore_errors=True)

    try:
        print("agentgen --help")
        floor = row("python -c pass", timed([sys.executable, "-c", "pass"], args.runs))
        help_ = row("agentgen --help", timed([str(BIN / "agentgen"), "--help"], args.runs))
        print(f"  => --help {help_:.3f} s (target <= 0.150 s), {help_ - floor:.3f} s above bare Python")

        answers_file = work / "answers.yml"
        import yaml

        answers_file.write_text(yaml.safe_dump(ANSWERS))
        copier_data = [f"--data={k}={v}" for k, v in ANSWERS.items() if k != "targets"]
        copier_data.append(f"--data=targets={ANSWERS['targets']}")
        print(f"\ngenerate ({', '.join(ANSWERS['targets'])}, scale large, secrets vault)")
        runs = max(3, args.runs // 2)
        copier = row("copier copy (render only)", timed(
            [str(BIN / "copier"), "copy", "--defaults", "--quiet", *copier_data,
             str(ROOT / "templates"), str(dest)], runs, clean))
        new = row("agentgen new --no-git (+validate)", timed(
            [str(BIN / "agentgen"), "new", str(dest), "--config", str(answers_file),
             "--no-input", "--no-git"], runs, clean))
        new_git = row("agentgen new (+validate, git)", timed(
            [str(BIN / "agentgen"), "new", str(dest), "--config", str(answers_file),
             "--no-input"], runs, clean))
        print(f"  => new / copier copy = {new / copier:.2f}x; new - copier = {new - copier:+.3f} s "
              f"(target <= +0.300 s); git init+commit adds {new_git - new:+.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
