"""Interactive `agentgen new` on a real terminal (a pseudo-terminal): defaults and choices shown,
invalid answers asked again, the answers used."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import yaml

from agentgen.prompt import _allowed_secrets


class Terminal:
    def __init__(self, args: list[str], cwd) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
                                     close_fds=True)
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.flat:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not shown; screen:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    assert text in self.flat, self.screen
        return self.flat

    @property
    def flat(self) -> str:
        """The screen without line breaks: rich wraps long prompts wherever the width falls."""
        return self.screen.replace("\r", "").replace("\n", "")

    def send(self, line: str) -> None:
        os.write(self.master, f"{line}\r".encode())

    def wait(self) -> int:
        code = self.proc.wait(timeout=60)
        try:
            while True:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    break
                self.screen += os.read(self.master, 4096).decode(errors="replace")
        except OSError:
            pass
        os.close(self.master)
        return code


def test_interactive_new_asks_the_three_questions(tmp_path):
    term = Terminal([sys.executable, "-m", "agentgen", "new", "bot", "--no-git"], tmp_path)
    screen = term.expect("Scale [dev/small/medium/large] (dev):")
    assert "agentgen presets" in screen
    term.send("huge")  # not a choice: asked again
    term.expect("Please select one of the available options")
    term.send("small")
    term.expect("Targets")
    term.send("compose, nomad")
    term.expect("nomad is not one of: compose, kubernetes, helm, langgraph-platform")
    term.send("compose,helm")
    screen = term.expect("Secrets backend [kubernetes/sealed-secrets/aws-secrets-manager/vault/"
                         "gcp-secret-manager/azure-key-vault] (kubernetes):")
    assert "[env/" not in screen
    term.send("")
    assert term.wait() == 0, term.screen
    answers = yaml.safe_load((tmp_path / "bot" / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["scale"], answers["targets"], answers["secrets"]) == (
        "bot", "small", ["compose", "helm"], "kubernetes")


def test_flags_are_not_asked_again(tmp_path):
    term = Terminal([sys.executable, "-m", "agentgen", "new", "--name", "bot", "--scale", "dev",
                     "--target", "compose", "--secrets", "env", "--dry-run"], tmp_path)
    assert term.wait() == 0, term.screen
    assert "Scale" not in term.screen and "Would write" in term.screen


def test_name_is_asked_when_missing_and_validated(tmp_path):
    term = Terminal([sys.executable, "-m", "agentgen", "new", "--scale", "dev", "--target",
                     "compose", "--secrets", "env", "--dry-run"], tmp_path)
    term.expect("Project name")
    term.send("Bad_Name")
    term.expect("DNS-1123")
    term.send("good-name")
    assert term.wait() == 0, term.screen
    assert "good-name" in term.screen


def test_secrets_choices_follow_the_targets():
    assert _allowed_secrets(["compose"]) == ["env", "aws-secrets-manager", "vault"]
    assert _allowed_secrets(["kubernetes"])[0] == "kubernetes"
    assert "env" not in _allowed_secrets(["compose", "helm"])


def test_interactive_init_asks_the_three_questions_in_the_users_project(tmp_path):
    import shutil
    from pathlib import Path

    project = tmp_path / "agent"
    shutil.copytree(Path(__file__).parent / "fixtures" / "byo" / "flat-requirements", project)
    term = Terminal([sys.executable, "-m", "agentgen", "init"], project)
    term.expect("Scale [dev/small/medium/large] (dev):")
    term.send("medium")
    term.expect("Targets")
    term.send("kubernetes")
    term.expect("Secrets backend")
    term.send("sealed-secrets")
    assert term.wait() == 0, term.screen
    assert "none of yours changed" in term.flat
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["mode"], answers["scale"], answers["targets"], answers["secrets"]) == (
        "agent", "init", "medium", ["kubernetes"], "sealed-secrets")
