"""Hostile input: every case is refused with a non-zero exit, one line naming the problem, no
traceback, nothing written, in bounded time and memory (measured on the real CLI process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentgen import load_spec
from agentgen.errors import SpecError

LIMIT_SECONDS = 5.0
LIMIT_RSS_MB = 500


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds, max RSS in MB) of `agentgen ARGS`, measured on that process."""
    import threading

    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "agentgen", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(60, proc.kill)  # a hang fails the timing assertion, never the suite
    killer.start()
    try:
        stderr = proc.stderr.read() if proc.stderr else ""
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, stderr, time.monotonic() - start, usage.ru_maxrss / 1024


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


FILES: dict[str, tuple[str, str]] = {
    # case: (answers file text, what the one line must say)
    "duplicate-key": ("name: one\nname: two\n", "duplicate key 'name'"),
    "underscore-key": ("name: demo\n_src_path: https://example.invalid\n", "unknown key '_src_path'"),
    "dunder-key": ("name: demo\n__class__: x\n", "unknown key '__class__'"),
    "alias-bomb": (_billion_laughs(), "more than 50 aliases"),
    "tag-on-a-scalar": ("name: !!map demo\n", "invalid YAML"),
    "integer-of-4301-digits": ("name: demo\ncheckpoint_retention_days: " + "9" * 4301 + "\n",
                               "4300 digits"),
    "deep-nesting": ("name: " + "[" * 1500 + "]" * 1500 + "\n", "nested deeper than"),
    "huge-file": ("name: demo\n" + "".join(f"k{i}: v\n" for i in range(200_000)), "larger than"),
    "huge-value": ("name: " + "x" * 900_000 + "\n", "name: 'xxx"),
    "provider-list": ("name: demo\nllm_provider: [openai]\n", "llm_provider"),
    "provider-dict": ("name: demo\nllm_provider: {a: b}\n", "llm_provider"),
    "nested-targets": ("name: demo\ntargets: [[compose]]\n", "targets[0]"),
    "mixed-unknown-keys": ("name: demo\n1: x\nzz: y\n", "unknown key"),
    "not-a-mapping": ("- name\n", "must be a mapping"),
    "keyword-package": ("name: demo\npackage: class\n", "package: 'class'"),
    "runtime-package": ("name: demo\npackage: agentgen_runtime\n", "package: 'agentgen_runtime'"),
    "long-package": ("name: demo\npackage: " + "p" * 300 + "\n", "package: 'ppp"),
    "yaml-bool-name": ("name: 'on'\n", "name: 'on'"),
    "long-namespace": ("name: demo\nnamespace: " + "n" * 56 + "\n", "at most 55 characters"),
    "long-host": ("name: demo\ningress_host: " + ("h" * 60 + ".") * 5 + "com\n", "253"),
    "trailing-newline": ('name: "demo\\n"\n', "name: 'demo\\n'"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_hostile_answers_files_are_refused_cleanly(tmp_path, case):
    text, needle = FILES[case]
    answers = tmp_path / "answers.yml"
    answers.write_text(text)
    code, stderr, seconds, rss = run_cli(["new", "out", "--config", str(answers), "--no-input",
                                          "--no-git"], tmp_path)
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr[-500:]
    assert "Traceback" not in stderr and len(stderr) < 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.yml"]  # nothing written
    assert seconds < LIMIT_SECONDS and rss < LIMIT_RSS_MB, (seconds, rss)


@pytest.mark.parametrize("source", ["fifo", "/dev/zero", "directory"])
def test_answers_that_are_not_regular_files_are_refused_without_reading(tmp_path, source):
    if source == "fifo":
        path = tmp_path / "answers.yml"
        os.mkfifo(path)  # reading it would block forever
    elif source == "directory":
        path = tmp_path / "answers.yml"
        path.mkdir()
    else:
        path = Path(source)
    code, stderr, seconds, _ = run_cli(["new", "out", "--config", str(path), "--no-input"], tmp_path)
    assert code == 2 and "not a regular file" in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "out").exists() and seconds < LIMIT_SECONDS


def test_an_empty_dest_is_refused_and_dot_must_be_said(tmp_path):
    code, stderr, _, _ = run_cli(["new", "", "--name", "x", "--no-input", "--no-git"], tmp_path)
    assert code != 0 and "DEST: empty" in stderr and list(tmp_path.iterdir()) == []
    here = tmp_path / "dotproject"
    here.mkdir()
    code, stderr, _, _ = run_cli(["new", ".", "--no-input", "--no-git"], here)
    assert code == 0, stderr
    assert (here / "Dockerfile").is_file()
    assert "name: dotproject" in (here / ".copier-answers.yml").read_text()


def test_the_copier_answers_file_may_carry_copier_keys(tmp_path):
    """`agentgen render --config .copier-answers.yml` (a project's own answers) keeps working."""
    answers = tmp_path / ".copier-answers.yml"
    answers.write_text(yaml.safe_dump({"_commit": "v0.1.0", "_src_path": "x", "name": "demo"}))
    from agentgen.spec import read_answers_file

    assert read_answers_file(answers) == {"name": "demo"}


@pytest.mark.parametrize("value", ["0", "79", "1e5", "0x1f", "007", "true", "null", "on", "no", "1.5"])
def test_scalars_yaml_would_retype_are_refused_where_they_land_unquoted(value):
    """`name` and `package` reach many files unquoted (labels, chart name, workflow keys); the
    namespace is always quoted instead (tests/test_properties.py renders those)."""
    for field in ("package", "name"):
        answers = {"name": "demo", field: value}
        if field == "package" and not value.isidentifier():
            continue  # refused by the identifier rule already
        if field == "name" and not value[0].isalpha():
            continue
        with pytest.raises(SpecError) as info:
            load_spec(answers)
        assert info.value.lines()[0].startswith(f"{field}: "), info.value.lines()
