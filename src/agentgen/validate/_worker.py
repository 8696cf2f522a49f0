"""The validator worker (see `validator_process`): warm up at once, then validate the directory named
on stdin and print the report as JSON on stdout."""

import signal
import sys
from pathlib import Path

signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

from agentgen.validate import validate_tree, warm_up  # noqa: E402


def main() -> None:
    warm_up()
    line = sys.stdin.readline().strip()
    if line:
        sys.stdout.write(validate_tree(Path(line)).to_json())


if __name__ == "__main__":
    main()
