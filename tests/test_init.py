"""`agentgen init`: a LangGraph project of the user's (fixtures written for these tests, one per
common layout) gets agentgen's deployment in place; the user's files are never changed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentgen.cli import app

from .conftest import snapshot
from .servers import free_port, http_status, process

pytestmark = pytest.mark.renders

FIXTURES = Path(__file__).parent / "fixtures" / "byo"
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
# What each fixture's graphs answer to {"text": "hi"} (none calls a model).
REPLIES = {
    "src-layout": {"agent": "react: hi"},
    "flat-requirements": {"echo": "HI!"},
    "uv-project": {"writer": "draft of hi", "critic": "review of hi"},
    "env-file": {"greeter": "Bonjour hi"},
    # a uv.lock as `uv lock` wrote it in October 2025 (langgraph 0.6, langchain-core 0.3, an old
    # langgraph-checkpoint the runtime's tested checkpointer pin cannot go with; langgraph-cli in a
    # dev group), an embeddings client created at import, Tavily, a write-all workflow, a prompt
    # with {{ }}, a .gitignore without .venv
    "dated-lock": {"researcher": "summary of hi"},
    # Poetry 2 (PEP 621 metadata, a package, a dev group, a private-index source), its poetry.lock
    # as `poetry lock` wrote it: newer langgraph and langchain-core than the runtime's tested pins
    "poetry-app": {"triage": "question: hi"},
}
# What a fixture's lock pins, as installed (older and newer than the runtime's tested pins).
LOCKED = {"dated-lock": {"langgraph": "0.6.8", "langgraph-checkpoint": "2.1.1", "langchain-core": "0.3.76"},
          "poetry-app": {"langgraph": "1.2.24", "langchain-core": "1.8.3"}}
# The keys a fixture's graphs need at import (its agent secrets, given to the server as files).
KEYS = {"dated-lock": {"openai_api_key": "sk-test", "tavily_api_key": "tvly-test"}}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout


def user_project(tmp_path: Path, name: str) -> Path:
    """A fixture project copied into a fresh git repository, committed as its user has it."""
    project = tmp_path / name
    shutil.copytree(FIXTURES / name, project)
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "our agent")
    return project


def worktree(project: Path) -> dict[str, bytes]:
    """Every file but git's own (`git status` may refresh its index)."""
    return {path: data for path, data in snapshot(project).items() if not path.startswith(".git/")}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def init(project: Path, *extra: str):
    result = invoke("init", str(project), "--no-input", *extra)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_init_adds_only_agentgen_files_and_check_is_clean(tmp_path, name):
    project = user_project(tmp_path, name)
    before = worktree(project)
    result = init(project)
    assert "none of yours changed" in result.output
    status = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert status and all(line.startswith("?? ") for line in status), status  # only added
    after = worktree(project)
    assert {path: after[path] for path in before} == before
    added = set(after) - set(before)
    assert {"Dockerfile", "agentgen.mk", "compose.yaml", "deploy/constraints.txt",
            "docs/deployment.md", ".github/workflows/agentgen-ci.yml", ".copier-answers.yml",
            "runtime/pyproject.toml"} <= added
    assert not {"README.md", "pyproject.toml", "Makefile", ".gitignore", ".env.example",
                "constraints.txt", "langgraph.json"} & added
    assert not any(p.startswith(("src/", "tests/")) for p in added)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["mode"] == "init"
    # A project's own .dockerignore is kept; agentgen writes one only where there was none.
    assert answers["own_dockerignore"] is (name != "flat-requirements")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", "deployment by agentgen")
    checked = invoke("check", str(project))
    assert checked.exit_code == 0, checked.output


def test_init_derives_the_answers_from_the_project(tmp_path):
    project = user_project(tmp_path, "uv-project")
    init(project, "--dry-run")
    assert not (project / ".copier-answers.yml").exists()  # dry run: nothing written
    init(project, "--target", "kubernetes", "--scale", "small")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["python_version"], answers["targets"], answers["secrets"]) == (
        "two-graphs", "3.11", ["kubernetes"], "kubernetes")  # pyproject name, langgraph.json python
    assert answers["description"] == "Two graphs in two modules, managed with uv"
    dockerfile = (project / "Dockerfile").read_text()
    assert "ARG PYTHON_VERSION=3.11" in dockerfile
    assert "install.py --uv /opt/uv/bin/uv \\\n        --constraint deploy/constraints.txt" in dockerfile


def test_secrets_given_add_to_the_ones_the_dependencies_need_in_every_target(tmp_path):
    project = user_project(tmp_path, "flat-requirements")
    with (project / "requirements.txt").open("a") as requirements:
        requirements.write("langchain-anthropic>=0.3\n")
    init(project, "--target", "compose", "--target", "kubernetes", "--target", "helm",
         "--secret", "serpapi_api_key", "--secret", "anthropic_api_key")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["agent_secrets"] == ["anthropic_api_key", "serpapi_api_key"]
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert {"anthropic_api_key", "serpapi_api_key"} <= set(compose["services"]["agent"]["secrets"])
    docs = (project / "docs" / "kubernetes.md").read_text()
    assert "--from-literal=serpapi_api_key=" in docs and "--from-literal=anthropic_api_key=" in docs
    configmap = yaml.safe_load((project / "deploy" / "kubernetes" / "base" / "configmap.yaml").read_text())
    assert json.loads(configmap["data"]["AGENT_SECRETS"]) == answers["agent_secrets"]
    assert "LLM_PROVIDER" not in configmap["data"]  # nothing reads it in your project
    name = answers["name"]
    values = yaml.safe_load((project / "deploy" / "helm" / name / "values.yaml").read_text())
    assert values["config"]["agentSecrets"] == answers["agent_secrets"]
    assert "llmProvider" not in values["config"]


def test_a_langgraph_json_setting_the_runtime_does_not_serve_is_named_at_once(tmp_path):
    """`ui` (generative UI) would be dropped silently by a server that ignores it: the runtime
    refuses to start with it, and init and validate say so before anything is deployed (a note:
    the file is yours); the same for an `auth` option it does not serve."""
    project = user_project(tmp_path, "flat-requirements")
    config = json.loads((project / "langgraph.json").read_text())
    (project / "langgraph.json").write_text(json.dumps({
        **config, "ui": {"agent": "./ui.tsx"},
        "auth": {"path": "./auth.py:auth", "cache": {"ttl_seconds": 5}}}))
    (project / "auth.py").write_text("from langgraph_sdk import Auth\n\nauth = Auth()\n")
    for result in (init(project), invoke("validate", str(project))):
        assert result.exit_code == 0, result.output
        flat = " ".join(result.output.split())
        assert "ui: generative UI components are not served by agentgen-runtime" in flat, result.output
        assert "auth.cache: caching of authentication decisions is not served" in flat, result.output


def test_an_adopted_project_with_custom_auth_keeps_it_and_gets_no_api_keys(tmp_path):
    """langgraph.json `auth.path` (the Platform's custom auth) is served: init answers custom_auth,
    no note says otherwise, and the deployment generates no API keys (the handler alone decides, as
    on the Platform): compose mounts none, init-secrets.sh makes none, the docs say how it works
    and how to add a key gate."""
    project = user_project(tmp_path, "flat-requirements")
    config = json.loads((project / "langgraph.json").read_text())
    (project / "auth.py").write_text(
        "from langgraph_sdk import Auth\n\nauth = Auth()\n\n\n@auth.authenticate\n"
        "async def authenticate(authorization: str | None) -> str:\n"
        "    if authorization != 'Bearer t':\n"
        "        raise Auth.exceptions.HTTPException(status_code=401)\n"
        "    return 'user'\n")
    (project / "langgraph.json").write_text(json.dumps({**config, "auth": {"path": "./auth.py:auth"}}))
    result = init(project, "--target", "compose", "--target", "kubernetes")
    assert result.exit_code == 0 and "not served" not in result.output, result.output
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["custom_auth"] is True
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert "api_keys" not in compose["secrets"] and "api_keys" not in compose["services"]["agent"]["secrets"]
    assert "secrets/api_keys" not in (project / "scripts" / "init-secrets.sh").read_text()
    assert "api_keys=" not in (project / "docs" / "kubernetes.md").read_text()
    deployment = " ".join((project / "docs" / "deployment.md").read_text().split())
    assert "Authentication is yours" in deployment and "add an `api_keys` secret" in deployment
    assert json.loads((project / "langgraph.json").read_text())["auth"] == {"path": "./auth.py:auth"}
    # a handler file that is not there is named before anything is deployed
    (project / "langgraph.json").write_text(json.dumps({**config, "auth": {"path": "./gone.py:auth"}}))
    validated = invoke("validate", str(project))
    assert validated.exit_code == 1 and "auth.path: ./gone.py does not exist" in validated.output, \
        validated.output


def test_a_store_index_gets_postgresql_with_pgvector_in_every_target(tmp_path):
    """langgraph.json store.index (semantic search) needs pgvector: init answers semantic_search and
    every PostgreSQL it writes (compose, Kubernetes and Helm dev databases, CI) is the pgvector
    image; without an index they stay postgres."""
    project = user_project(tmp_path, "flat-requirements")
    config = json.loads((project / "langgraph.json").read_text())
    (project / "langgraph.json").write_text(json.dumps({**config, "store": {"index": {
        "dims": 1536, "embed": "openai:text-embedding-3-small", "fields": ["text"]}}}))
    init(project, "--target", "compose", "--target", "kubernetes", "--target", "helm", "--scale", "dev")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["semantic_search"] is True
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    images = [compose["services"]["postgres"]["image"]]
    postgres = next(d for d in yaml.safe_load_all(
        (project / "deploy" / "kubernetes" / "base" / "postgres.yaml").read_text())
        if d["kind"] == "StatefulSet")
    images += [c["image"] for c in postgres["spec"]["template"]["spec"]["containers"]]
    values = yaml.safe_load((project / "deploy" / "helm" / answers["name"] / "values.yaml").read_text())
    images.append(values["postgresql"]["image"])
    workflow = yaml.safe_load((project / ".github" / "workflows" / "agentgen-ci.yml").read_text())
    images.append(workflow["jobs"]["test"]["services"]["postgres"]["image"])
    assert images == ["pgvector/pgvector:0.8.0-pg16"] * 4, images
    assert "store.index" in (project / "docs" / "deployment.md").read_text()

    plain = user_project(tmp_path / "plain", "flat-requirements")
    init(plain, "--target", "compose")
    assert yaml.safe_load((plain / "compose.yaml").read_text())["services"]["postgres"]["image"] == \
        "postgres:16"


def test_init_takes_an_answers_file_over_what_it_derives(tmp_path):
    project = user_project(tmp_path, "src-layout")
    config = tmp_path / "answers.yml"
    config.write_text("name: support-bot\nscale: medium\ntargets: [helm]\nsecrets: vault\n")
    init(project, "--config", str(config))
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["scale"], answers["targets"], answers["secrets"]) == (
        "support-bot", "medium", ["helm"], "vault")
    assert (project / "deploy" / "helm" / "support-bot" / "Chart.yaml").is_file()
    assert "./runtime[redis,vault]" in (project / "Dockerfile").read_text()


def test_a_project_named_like_a_reserved_package_is_adopted(tmp_path):
    project = user_project(tmp_path, "env-file")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "greeter"', 'name = "langgraph"'))
    init(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["package"]) == ("langgraph", "langgraph_agent")


def planned(project: Path, *extra: str) -> dict[str, list[str]]:
    """install.py --print: {section: lines} (requirements, constraints, preferences)."""
    done = subprocess.run([sys.executable, str(project / "runtime/src/agentgen_runtime/install.py"),
                           "--constraint", str(project / "deploy" / "constraints.txt"), "--print",
                           *extra], cwd=project, capture_output=True, text=True, check=True)
    sections: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("# "):
            current = sections.setdefault(line[2:].split(" (")[0], [])
        else:
            current.append(line)
    return sections


def test_install_plan_follows_langgraph_json_and_the_lock(tmp_path):
    """install.py (run by the image and agentgen.mk) installs each dependency as LangGraph reads
    it, in one resolution where the project's uv.lock pins are constraints and the runtime's
    tested pins only preferences (never for a package the lock pins)."""
    project = user_project(tmp_path, "uv-project")
    init(project)
    plan = planned(project)
    # A virtual uv project (no build backend): its dependencies, not the project itself.
    assert plan["requirements"] == [str((project / "runtime").resolve()), "langgraph==1.2.22",
                                    "langchain-core==1.7.2"]
    lock = {line.split("==")[0] for line in plan["constraints"]}
    assert "langsmith" in lock and sum(1 for line in plan["constraints"]
                                       if line.startswith("langsmith==")) == 1
    lock_text = (project / "uv.lock").read_text().replace('"', "")
    # the project's development group (an old starlette, pytest) is not the deployment's
    assert not any(line.startswith(("starlette==0.40.0", "pytest==")) for line in plan["constraints"])
    assert "name = starlette\nversion = 0.40.0" in lock_text
    locked = next(line for line in plan["constraints"] if line.startswith("langsmith=="))
    assert locked.replace("==", "\nversion = ") in lock_text.replace("name = ", "")
    preferred = {line.split("==")[0] for line in plan["preferences"]}
    assert "fastapi" in preferred and not preferred & lock
    # A package (setuptools, src layout) is installed as itself, editable for make install.
    src = user_project(tmp_path, "src-layout")
    init(src)
    assert planned(src, "--editable")["requirements"] == [f"-e {(src / 'runtime').resolve()}",
                                                         f"-e {src.resolve()}"]


POETRY_PYPROJECT = """\
[tool.poetry]
name = "poetry-bot"
version = "0.1.0"
description = "Managed with Poetry"
packages = [{include = "bot"}]

[tool.poetry.dependencies]
python = "^3.11"
langgraph = "^1.0"
langchain-anthropic = "^0.3"
langchain-openai = "^0.3"
tavily-python = "^0.5"
requests = {version = "^2.31", source = "private"}

[tool.poetry.group.dev.dependencies]
pytest = "^7.0"

[build-system]
requires = ["poetry-core>=1.0"]
build-backend = "poetry.core.masonry.api"
"""
POETRY_LOCK = """\
[[package]]
name = "langgraph"
version = "1.2.22"
description = "from the index"

[[package]]
name = "ourlib"
version = "0.3.0"
description = "from git: not a pin pip can take"

[package.source]
type = "git"
url = "https://example.com/ourlib.git"
reference = "main"
resolved_reference = "0123456789abcdef"

[[package]]
name = "Requests"
version = "2.31.0"
description = "from a private index"

[package.dependencies]
idna = ">=2.5"

[package.source]
type = "legacy"
url = "https://pypi.example.com/simple"
reference = "private"

[[package]]
name = "idna"
version = "3.6"
description = "needed by requests"

[[package]]
name = "pytest"
version = "7.4.0"
description = "the project's development tool: not the deployment's"
"""
PDM_LOCK = """\
[[package]]
name = "langgraph"
version = "1.2.20"

[[package]]
name = "ourlib"
version = "0.3.0"
git = "https://example.com/ourlib.git"
revision = "0123456789abcdef"
"""


@pytest.mark.parametrize(("lock", "text", "pins"), [
    ("poetry.lock", POETRY_LOCK, {"langgraph==1.2.22", "Requests==2.31.0", "idna==3.6"}),
    ("pdm.lock", PDM_LOCK, {"langgraph==1.2.20"}),
])
def test_a_poetry_or_pdm_project_is_adopted_with_its_lock(tmp_path, lock, text, pins):
    project = tmp_path / "poetry-bot"
    (project / "bot").mkdir(parents=True)
    (project / "bot" / "__init__.py").write_text("")
    (project / "bot" / "graph.py").write_text("graph = None\n")
    (project / "pyproject.toml").write_text(POETRY_PYPROJECT)
    (project / lock).write_text(text)
    (project / "langgraph.json").write_text(json.dumps(
        {"dependencies": ["."], "graphs": {"bot": "./bot/graph.py:graph"}}))
    init(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["description"]) == ("poetry-bot", "Managed with Poetry")
    # every key its dependencies read is carried (not one provider picked among several)
    keys = ["anthropic_api_key", "openai_api_key", "tavily_api_key"]
    assert answers["agent_secrets"] == keys and answers["llm_provider"] == "fake"
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert set(keys) <= set(compose["secrets"]) and set(keys) <= set(compose["services"]["agent"]["secrets"])
    assert json.loads(compose["services"]["agent"]["environment"]["AGENT_SECRETS"]) == keys
    init_secrets = (project / "scripts" / "init-secrets.sh").read_text()
    assert all(f"secrets/{key}" in init_secrets and f"${{{key.upper()}:-}}" in init_secrets
               for key in keys)
    env_example = (project / "deploy" / "env.example").read_text()
    assert "LLM_PROVIDER" not in env_example and "# TAVILY_API_KEY=" in env_example
    plan = planned(project)
    assert pins <= set(plan["constraints"]) and not any(line.lower().startswith("ourlib")
                                                        for line in plan["constraints"])
    assert "pytest==7.4.0" not in plan["constraints"]  # a development group's pin
    # the lock's langgraph pin wins: the runtime's is not even a preference
    assert not any(line.startswith("langgraph==") for line in plan["preferences"])
    assert plan["requirements"] == [str((project / "runtime").resolve()), str(project.resolve())]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REPLIES))
def test_make_install_then_the_entrypoint_serves_every_graph(tmp_path, postgres, name, monkeypatch):
    """As the user would after init: `make -f agentgen.mk install`, `agentgen validate --import`
    (with the .venv present), then the image's ENTRYPOINT lists every graph of langgraph.json and
    answers one run of each through the langgraph-sdk client."""
    from langgraph_sdk import get_client

    if shutil.which("make") is None:
        pytest.skip("make is not installed (apt-get install make)")
    project = user_project(tmp_path, name)
    init(project)
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(["make", "-f", "agentgen.mk", "install"], cwd=project, capture_output=True,
                          text=True, env=env, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert git(project, "status", "--porcelain", "--untracked-files=all", ".venv") == ""
    keys = KEYS.get(name, {})
    for key in keys:
        monkeypatch.delenv(key.upper(), raising=False)
    if name in LOCKED:  # the lock's versions hold (the runtime's tested ones differ); no dev group
        versions = json.loads(subprocess.run(
            [str(project / ".venv" / "bin" / "python"), "-c", "import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"],
            capture_output=True, text=True, check=True).stdout)
        assert {p: versions.get(p) for p in LOCKED[name]} == LOCKED[name], versions
        assert "mypy" not in versions and "langgraph-cli" not in versions
    if keys:  # a graph that needs a key at import fails validate and doctor, one line each
        validated = invoke("validate", str(project), "--import")
        assert validated.exit_code == 1 and "OpenAIError" in validated.output, validated.output
        doctor = subprocess.run([str(project / ".venv" / "bin" / "agentgen-runtime"), "doctor"],
                                cwd=project, capture_output=True, text=True, timeout=120)
        assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
        assert any(line.startswith("problem: graphs: ") and "OpenAIError" in line
                   for line in doctor.stderr.splitlines()), doctor.stderr
    for key, value in keys.items():
        monkeypatch.setenv(key.upper(), value)
    validated = invoke("validate", str(project), "--import")
    assert validated.exit_code == 0, validated.output
    assert "import (1)" in validated.output

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_keys").write_text("k-user")
    for key, value in keys.items():
        (secrets / key).write_text(value)
        monkeypatch.delenv(key.upper())  # the server reads them from its secrets directory
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert set(keys) <= set(answers["agent_secrets"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {"DATABASE_URL": postgres.create_database(name.replace("-", "_")), "PORT": str(port),
                  "SECRETS_DIR": str(secrets), "WORKERS": "1", "LOG_LEVEL": "WARNING",
                  "AGENT_SECRETS": json.dumps(answers["agent_secrets"])}
    with process([str(project / ".venv" / "bin" / "agentgen-runtime")], cwd=project, env=server_env,
                 what=f"{name} served", ready=lambda: http_status(f"{base}/ready") == 200):

        async def scenario() -> None:
            client = get_client(url=base, api_key="k-user")
            graphs = {a["graph_id"] for a in await client.assistants.search()}
            assert graphs == set(json.loads((project / "langgraph.json").read_text())["graphs"])
            for graph_id, reply in REPLIES[name].items():
                thread = (await client.threads.create())["thread_id"]
                result = await client.runs.wait(thread, graph_id, input={"text": "hi"})
                assert result["reply"] == reply, (graph_id, result)

        asyncio.run(scenario())
        # The generated load test drives the user's own graph (its input has no messages).
        graph_id = next(iter(REPLIES[name]))
        load = subprocess.run([str(project / ".venv" / "bin" / "python"), "scripts/load_test.py",
                               "--url", base, "--requests", "20", "--concurrency", "2", "--warmup", "0",
                               "--assistant", graph_id, "--input", '{"text": "hi"}',
                               "--api-key", "k-user", "--json"],
                              cwd=project, capture_output=True, text=True, timeout=300)
        assert load.returncode == 0, load.stdout + load.stderr
        measured = json.loads(load.stdout)
        assert (measured["requests"], measured["errors"]) == (20, 0), measured


def test_graph_flag_writes_langgraph_json(tmp_path):
    project = user_project(tmp_path, "flat-requirements")
    (project / "langgraph.json").unlink()
    git(project, "commit", "--quiet", "-am", "no langgraph.json")
    init(project, "--graph", "echo=agent.py:graph")
    assert json.loads((project / "langgraph.json").read_text()) == {
        "dependencies": ["."], "graphs": {"echo": "./agent.py:graph"}}
    assert invoke("validate", str(project)).exit_code == 0


@pytest.mark.parametrize(("setup", "args", "message"), [
    (lambda p: (p / "langgraph.json").unlink(), (),
     "no langgraph.json (pass --graph path/to/file.py:attribute to write one)"),
    (lambda p: (p / "langgraph.json").unlink(), ("--graph", "missing.py:graph"),
     "--graph: ./missing.py does not exist"),
    (lambda p: (p / "langgraph.json").unlink(), ("--graph", "agent.py:nope"),
     "--graph: ./agent.py does not define 'nope'"),
    (lambda p: None, ("--graph", "agent.py:graph"), "langgraph.json exists; declare graphs there"),
    (lambda p: (p / "Dockerfile").write_text("FROM scratch\n"), (),
     "holds files agentgen must own: Dockerfile (move them away, or pass --force"),
    (lambda p: (p / "langgraph.json").write_text(
        '{"dependencies": ["."], "graphs": {"echo": "./gone.py:graph"}}'), (),
     "graph 'echo': ./gone.py does not exist"),
    (lambda p: (p / ".copier-answers.yml").write_text("_commit: v0.1.0\n"), (),
     "agentgen already manages this project (.copier-answers.yml): use agentgen update"),
    (lambda p: None, ("--secret", "database_url"), "agent_secrets[0]: 'database_url' is invalid"),
    (lambda p: None, ("--secret", "Tavily-Key"), "agent_secrets[0]: 'Tavily-Key' is invalid"),
])
def test_init_refuses_with_one_line_and_writes_nothing(tmp_path, setup, args, message):
    project = user_project(tmp_path, "flat-requirements")
    setup(project)
    before = snapshot(project)
    result = invoke("init", str(project), "--no-input", *args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors and len(errors) <= 2, result.output  # a finding and its count at most
    assert snapshot(project) == before
    assert not list(tmp_path.glob(".agentgen-*")) and not list(project.glob(".agentgen-*"))


def test_force_moves_the_users_files_aside(tmp_path):
    project = user_project(tmp_path, "flat-requirements")
    (project / "Dockerfile").write_text("FROM scratch\n")
    (project / "scripts").mkdir()
    (project / "scripts" / "backup.sh").write_text("echo ours\n")
    result = init(project, "--force")
    assert "Moved your Dockerfile aside to Dockerfile.orig" in result.output
    assert (project / "Dockerfile.orig").read_text() == "FROM scratch\n"
    assert (project / "scripts" / "backup.sh.orig").read_text() == "echo ours\n"
    assert "agentgen-runtime" in (project / "Dockerfile").read_text()


def test_new_force_into_a_langgraph_project_points_to_init(tmp_path):
    project = user_project(tmp_path, "src-layout")
    before = snapshot(project)
    result = invoke("new", str(project), "--force", "--no-input")
    assert result.exit_code == 1
    assert f"run agentgen init {project} to add the deployment to it in place" in result.output
    assert snapshot(project) == before


OLD_INTEGRATION_LOCK = """\
version = 1
requires-python = ">=3.11"

[[package]]
name = "old-integration"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "langchain-community" },
    { name = "langgraph" },
]

[[package]]
name = "langchain-community"
version = "0.2.19"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "langchain-core" },
]

[[package]]
name = "langchain-core"
version = "0.2.43"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "langgraph"
version = "0.2.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "black"
version = "22.1.0"
source = { registry = "https://pypi.org/simple" }
"""


def test_a_project_whose_pins_the_runtime_cannot_run_with_is_refused_naming_each_conflict(tmp_path):
    """An old integration pins langchain-core 0.2 (below the runtime's >=0.3): no environment holds
    both. init says so before anything is written, one line per package and what brings it; the
    same check stops `make -f agentgen.mk install` / the image build before pip."""
    project = user_project(tmp_path, "uv-project")
    (project / "uv.lock").write_text(OLD_INTEGRATION_LOCK)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "old-integration"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["langchain-community==0.2.19", "langgraph==0.2.0"]\n')
    git(project, "commit", "--quiet", "-am", "an old integration")
    before = snapshot(project)
    result = invoke("init", str(project), "--no-input")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert ("langchain-core: your project pins 0.2.43, brought by langchain-community, but "
            "agentgen-runtime needs langchain-core>=0.3") in out, out
    assert "langgraph: your project pins 0.2.0, brought by langgraph, but agentgen-runtime " \
           "needs langgraph>=0.6.2" in out, out
    assert "black" not in out and "Traceback" not in out
    assert snapshot(project) == before


@pytest.mark.slow
def test_a_conflict_only_a_resolution_finds_is_named_by_init_and_by_make_install(tmp_path):
    """No lock, no pin outside the runtime's ranges: `langchain-anthropic==0.1.23` (a pinned old
    integration) needs langchain-core<0.3, which only resolving shows. init resolves for the
    project's Python (uv, as the install does) and refuses before writing anything, naming
    langchain-core, what brings it and the runtime's range; make install says the same when run
    anyway (here: with init's files rendered for another requirement)."""
    project = user_project(tmp_path, "flat-requirements")
    (project / "requirements.txt").write_text("langgraph>=0.2\nlangchain-anthropic==0.1.23\n")
    git(project, "commit", "--quiet", "-am", "an old integration")
    before = snapshot(project)
    result = invoke("init", str(project), "--no-input")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert ("langchain-core: your project needs 0.2.43, brought by langchain-anthropic, but "
            "agentgen-runtime needs langchain-core>=0.3") in out, out
    assert "Traceback" not in out and snapshot(project) == before
    # The project as it was before the old integration: adopted; then the integration added.
    (project / "requirements.txt").write_text("langgraph>=0.2\n")
    init(project)
    (project / "requirements.txt").write_text("langgraph>=0.2\nlangchain-anthropic==0.1.23\n")
    done = subprocess.run(["make", "-f", "agentgen.mk", "install"], cwd=project, capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode != 0
    assert ("install.py: conflict: langchain-core: your project needs 0.2.43, brought by "
            "langchain-anthropic") in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr


SSE_STARLETTE = """
[[package]]
name = "sse-starlette"
version = "1.6.5"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "starlette" },
]
"""


@pytest.mark.slow
def test_a_lock_pin_of_a_package_the_project_only_brings_moves_when_nothing_else_fits(tmp_path):
    """The lock pins starlette 0.27 (brought by the project's sse-starlette); no fastapi in the
    runtime's range runs on it. The direct dependencies' pins hold, starlette moves, and init
    says which pins moved (the install resolves the same way)."""
    project = user_project(tmp_path, "uv-project")
    lock = (project / "uv.lock").read_text()
    lock = lock.replace('name = "starlette"\nversion = "0.40.0"', 'name = "starlette"\nversion = "0.27.0"')
    lock = lock.replace('dependencies = [\n    { name = "langchain-core" },\n    { name = "langgraph" },\n]',
                        'dependencies = [\n    { name = "langchain-core" },\n    { name = "langgraph" },\n'
                        '    { name = "sse-starlette" },\n]')
    (project / "uv.lock").write_text(lock + SSE_STARLETTE)
    pyproject = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(pyproject.replace(
        '"langchain-core==1.7.2"]', '"langchain-core==1.7.2", "sse-starlette==1.6.5"]'))
    git(project, "commit", "--quiet", "-am", "server-sent events")
    result = init(project)
    out = " ".join(result.output.split())
    assert "note: your lock's pins of packages your dependencies bring do not all fit the runtime" \
        in out, out
    moved = out.split("these moved: ")[1].split(", ")
    assert any(m.startswith("starlette 0.27.0 -> ") for m in moved), moved
    assert not any(m.startswith(("langgraph ", "langchain-core ", "sse-starlette ")) for m in moved)
    plan = planned(project)
    assert "starlette==0.27.0" in plan["constraints"] and "sse-starlette==1.6.5" in plan["constraints"]


def test_force_moves_a_directory_where_agentgen_renders_a_file_aside(tmp_path):
    """`Dockerfile` as a non-empty directory once made init --force fail with FileExistsError."""
    project = user_project(tmp_path, "flat-requirements")
    (project / "Dockerfile").mkdir()
    (project / "Dockerfile" / "notes.txt").write_text("ours\n")
    result = init(project, "--force")
    assert "Moved your Dockerfile aside to Dockerfile.orig" in result.output
    assert (project / "Dockerfile.orig" / "notes.txt").read_text() == "ours\n"
    assert (project / "Dockerfile").is_file()
