"""The image built from the generated Dockerfile runs the generated Kubernetes Deployment under
`podman kube play` and answers /health, and /ready against a real PostgreSQL (../shared/TOOLS.md recipe:
no registry, so the base image is a debootstrapped Debian imported into podman)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from .servers import free_port, http_status, venv_tool, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.container]
INSTALL = "apt-get install -y podman buildah runc debootstrap"
BASE = "docker.io/library/python:3.12-slim-trixie"  # what the generated Dockerfile starts FROM


def podman(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, **kw)


@pytest.fixture(scope="module")
def containers(tmp_path_factory) -> Path:
    for tool in ("podman", "debootstrap", "runc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed ({INSTALL})")
    if os.geteuid() != 0:
        pytest.skip("debootstrap and rootful podman need root here")
    work = tmp_path_factory.mktemp("podman")
    conf = work / "containers.conf"  # crun fails on these machines; runc works with these limits
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
    os.environ["CONTAINERS_CONF"] = str(conf)
    if podman("image", "exists", BASE, check=False).returncode != 0:
        mirror = next(line.split()[1] for line in
                      Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines()
                      if line.startswith("URIs:"))
        rootfs = work / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=python3,python3-venv,python-is-python3,ca-certificates",
                        "bookworm", str(rootfs), mirror], check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True,
                       capture_output=True)
        tar.wait()
    return work


def test_generated_deployment_runs_under_podman_kube_play(render, containers, postgres, tmp_path):
    project = render({"targets": ["kubernetes"], "scale": "small", "secrets": "kubernetes"})
    image = "localhost/demo-under-test:0.1.0"
    volumes = []
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():  # the registry proxy's CA, if any
        volumes = ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
    # --layers=false: no intermediate-layer cache, whose state an interrupted earlier build can corrupt
    build = podman("build", "--format", "docker", "--pull=never", "--network=host", "--layers=false",
                   *volumes,
                   "-t", image, str(project), check=False)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    inspect = podman("image", "inspect", image, "--format", "{{.Config.User}} {{.Config.Healthcheck}}")
    assert inspect.stdout.startswith("10001:10001") and "healthcheck" in inspect.stdout

    kubectl = venv_tool("kubectl", "scripts/install-validators.sh")
    overlay = project / "deploy/kubernetes/overlays/production"
    rendered = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True,
                              check=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    port = free_port()
    database = postgres.create_database("kubeplay")
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    config["data"].update({"PORT": str(port), "WORKERS": "1", "DATABASE_URL": database})
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container.update(image=image, imagePullPolicy="Never")
    # podman 4.3 quirks, not changes to what Kubernetes gets: host networking (no port mappings),
    # numeric probe ports, and an explicit `optional` on secret volumes (nil otherwise: it panics).
    container.pop("ports")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        container[probe]["httpGet"]["port"] = port
    for volume in pod["volumes"]:
        if "secret" in volume:
            volume["secret"]["optional"] = False
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-secrets"},
              "data": {"database_password": base64.b64encode(b"not-used").decode(),
                       "api_keys": base64.b64encode(b"k-container").decode()}}
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(secret))
    play = tmp_path / "play.yaml"
    play.write_text(yaml.safe_dump_all([config, deployment], sort_keys=False))
    podman("secret", "rm", "demo-secrets", check=False)
    podman("kube", "play", str(tmp_path / "secret.yaml"))
    try:
        started = podman("kube", "play", "--network", "host", str(play), check=False)
        assert started.returncode == 0, started.stderr[-2000:]
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_status(f"{base}/health") == 200, 60, "container /health")
        except TimeoutError:
            logs = podman("logs", "demo-pod-0-agent", check=False)
            tail = logs.stdout[-3000:] + logs.stderr[-3000:]
            raise AssertionError(f"container not healthy:\n{tail}") from None
        wait_until(lambda: http_status(f"{base}/ready") == 200, 30, "container /ready")
        # the API key from the mounted Secret is required and accepted. (podman 4.3 mounts a Secret's
        # `data` without decoding its base64, Kubernetes decodes it: the key is what the file holds.)
        assert http_status(f"{base}/assistants/agent") == 401
        key = podman("exec", "demo-pod-0-agent", "cat", "/run/secrets/api_keys").stdout.strip()
        assert key in ("k-container", base64.b64encode(b"k-container").decode())
        keyed = urllib.request.Request(f"{base}/assistants/agent", headers={"X-API-Key": key})
        with urllib.request.urlopen(keyed, timeout=10) as response:  # noqa: S310 - loopback
            assert json.load(response)["graph_id"] == "agent"
        user = podman("exec", "demo-pod-0-agent", "id", "-u", check=False).stdout.strip()
        assert user == "10001"
        write = podman("exec", "demo-pod-0-agent", "touch", "/app/x", check=False)
        assert write.returncode != 0  # read-only root filesystem
    finally:
        podman("kube", "down", str(play), check=False)
        podman("secret", "rm", "demo-secrets", check=False)
        podman("rmi", "-f", image, check=False)


@pytest.mark.parametrize(("fixture", "graph", "reply"), [
    ("env-file", "greeter", "Bonjour hi"),  # greeter.env reaches the image
    ("dated-lock", "researcher", "summary of hi"),  # its uv.lock's versions; keys it reads at import
    ("poetry-app", "triage", "question: hi"),  # a Poetry 2 package and its poetry.lock
])
def test_an_adopted_project_builds_and_serves(containers, postgres, tmp_path, fixture, graph, reply):
    """`agentgen init` on a user's project (hatchling package, module graph; an env file, or an
    old uv.lock and a graph that needs provider keys at import): the image installs it as its
    langgraph.json and lock say and serves its graph, non-root and read-only."""
    from .test_init import KEYS, init, user_project

    project = user_project(tmp_path, fixture)
    init(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    image = f"localhost/{fixture}-under-test:0.1.0"
    volumes = []
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        volumes = ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
    build = podman("build", "--format", "docker", "--pull=never", "--network=host", "--layers=false",
                   *volumes, "-t", image, str(project), check=False)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api_keys").write_text("k-adopted")
    for key, value in KEYS.get(fixture, {}).items():
        (secrets / key).write_text(value)
    secrets.chmod(0o755)
    for file in secrets.iterdir():
        file.chmod(0o644)
    port = free_port()
    name = f"{fixture}-under-test"
    database = postgres.create_database("adopted_" + fixture.replace("-", "_"))
    podman("rm", "-f", name, check=False)
    started = podman("run", "-d", "--name", name, "--network", "host", "--read-only",
                     "--cap-drop", "ALL", "--tmpfs", "/tmp", "-v", f"{secrets}:/run/secrets:ro",
                     "-e", f"DATABASE_URL={database}", "-e", f"PORT={port}",
                     "-e", "WORKERS=1", "-e", f"AGENT_SECRETS={json.dumps(answers['agent_secrets'])}",
                     image, check=False)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_status(f"{base}/ready") == 200, 90, "container /ready")
        except TimeoutError:
            logs = podman("logs", name, check=False)
            raise AssertionError(f"not ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None
        request = urllib.request.Request(
            f"{base}/runs/wait", method="POST", headers={"X-API-Key": "k-adopted",
                                                        "Content-Type": "application/json"},
            data=json.dumps({"assistant_id": graph, "input": {"text": "hi"}}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            assert json.load(response)["reply"] == reply
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    finally:
        podman("rm", "-f", name, check=False)
        podman("rmi", "-f", image, check=False)
