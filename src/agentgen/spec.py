"""The typed spec: what the user answered, validated against one JSON Schema (draft 2020-12).

`load_spec(answers)` is the only way in: it fills derived defaults, validates the result with
`jsonschema` (every problem reported with its field path), applies the cross-field rules, and returns a
frozen `Spec`. `spec_schema()` is the schema `agentgen schema` prints and every answers file must match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cache, cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ._resources import template_dir
from .errors import ConfigFileError, FieldProblem, SpecError


class Scale(StrEnum):
    DEV = "dev"
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class Target(StrEnum):
    COMPOSE = "compose"
    KUBERNETES = "kubernetes"
    HELM = "helm"
    LANGGRAPH_PLATFORM = "langgraph-platform"


class SecretsBackend(StrEnum):
    ENV = "env"
    KUBERNETES = "kubernetes"
    SEALED_SECRETS = "sealed-secrets"
    AWS_SECRETS_MANAGER = "aws-secrets-manager"
    VAULT = "vault"
    GCP_SECRET_MANAGER = "gcp-secret-manager"
    AZURE_KEY_VAULT = "azure-key-vault"


class Mode(StrEnum):
    NEW = "new"  # a repository around the sample agent (`agentgen new`)
    INIT = "init"  # the deployment added to an existing LangGraph project (`agentgen init`)


class LLMProvider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    FAKE = "fake"


PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
# The runtime's own secret settings: an agent secret cannot take their names.
RUNTIME_SECRETS = ("api_keys", "database_url", "database_password", "redis_url", "sentry_dsn",
                   "vault_token")
MAX_AGENT_SECRETS = 32
DEFAULT_MODELS = MappingProxyType(
    {LLMProvider.OPENAI: "gpt-4o-mini", LLMProvider.ANTHROPIC: "claude-3-5-haiku-latest",
     LLMProvider.FAKE: "echo"}
)
KUBERNETES_TARGETS = frozenset({Target.KUBERNETES, Target.HELM})
# Backends whose values reach the pod only through Kubernetes objects (a Secret, a SealedSecret, or the
# External Secrets Operator); they need a kubernetes or helm target.
KUBERNETES_ONLY_BACKENDS = frozenset(
    {SecretsBackend.KUBERNETES, SecretsBackend.SEALED_SECRETS, SecretsBackend.GCP_SECRET_MANAGER,
     SecretsBackend.AZURE_KEY_VAULT}
)

NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
# Plain YAML scalars that YAML 1.1 or 1.2 reads as a boolean, null or number, not a string: such a
# name written unquoted into a manifest changes type (kubectl, helm and GitHub reject it).
YAML_NON_STRING = (r"^(y|n|yes|no|on|off|true|false|null|~|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-f]+|0b[01]+"
                   r"|[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[-+]?[0-9]+)?|[0-9]+(:[0-5]?[0-9])+)$")
PYTHON_KEYWORDS = ("and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
                   "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in",
                   "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
                   "with", "yield")
# Packages a project's own package must not shadow (the runtime and what it imports by name).
RESERVED_PACKAGES = ("agentgen_runtime", "langgraph", "langchain_core", "pydantic", "pydantic_settings",
                     "fastapi", "psycopg", "tests")
# Free text lands in YAML, TOML and JSON strings (escaped by each format's rules): characters YAML
# cannot carry even escaped-free (C0/C1 controls but tab and line breaks, DEL, lone surrogates,
# U+FFFE/U+FFFF) are refused. BMP escapes only, so that ECMA-262 engines read the pattern alike.
DESCRIPTION_PATTERN = (r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u0084\u0086-\u009f"
                       r"\ud800-\udfff\ufffe\uffff]*$")
# `<namespace>-staging` (the staging overlay's namespace) must stay a DNS label of 63 characters.
NAMESPACE_MAX = 63 - len("-staging")
_NAME_RULE = ("a DNS-1123 label of at most 40 characters: lowercase letters, digits and '-', "
              "starting with a letter and not ending with '-', and not a word YAML reads as a "
              "boolean or null (true, no, on, null, ...)")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
# Exact (Fraction): "700m" and "0.7" are the same quantity (floats once told them apart).
_QUANTITY_FACTORS = {None: Fraction(1), "m": Fraction(1, 1000), "k": Fraction(10**3),
                     "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
                     "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30),
                     "Ti": Fraction(2**40)}


@cache
def presets() -> Mapping[str, Mapping[str, Any]]:
    """The scale presets, read from the template's `presets.yml` (the single source of truth)."""
    data = yaml.safe_load((template_dir() / "presets.yml").read_text(encoding="utf-8"))
    return data["scale_presets"]["default"]


_PRESET_FIELDS: dict[str, dict[str, Any]] = {
    "replicas": {"type": "integer", "minimum": 1, "maximum": 100,
                 "description": "Replicas when autoscaling is off (and the compose scale)"},
    "hpa_enabled": {"type": "boolean", "description": "Create a HorizontalPodAutoscaler"},
    "hpa_min_replicas": {"type": "integer", "minimum": 1, "maximum": 100,
                         "description": "HPA minimum replicas"},
    "hpa_max_replicas": {"type": "integer", "minimum": 1, "maximum": 1000,
                         "description": "HPA maximum replicas"},
    "hpa_cpu_percent": {"type": "integer", "minimum": 10, "maximum": 100,
                        "description": "HPA target average CPU utilisation (%)"},
    "hpa_memory_percent": {"type": "integer", "minimum": 10, "maximum": 100,
                           "description": "HPA target average memory utilisation (%)"},
    "pdb_enabled": {"type": "boolean", "description": "Create a PodDisruptionBudget"},
    "pdb_min_available": {"type": "integer", "minimum": 0,
                          "description": "PodDisruptionBudget minAvailable"},
    "cpu_request": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?m?$",
                    "description": "Container CPU request (Kubernetes quantity)"},
    "cpu_limit": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?m?$",
                  "description": "Container CPU limit (Kubernetes quantity)"},
    "memory_request": {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                       "description": "Container memory request (Kubernetes quantity)"},
    "memory_limit": {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                     "description": "Container memory limit (Kubernetes quantity)"},
    "uvicorn_workers": {"type": "integer", "minimum": 1, "maximum": 64,
                        "description": "uvicorn worker processes per container"},
    "db_pool_size": {"type": "integer", "minimum": 1, "maximum": 500,
                     "description": "PostgreSQL pool size per worker"},
    "db_pool_overflow": {"type": "integer", "minimum": 0, "maximum": 500,
                         "description": "Extra PostgreSQL connections allowed above the pool size"},
    "redis": {"type": "boolean", "description": "Run Redis (rate limiting, shared state)"},
    "nginx": {"type": "boolean", "description": "Put nginx in front as a load balancer (compose)"},
    "topology_spread": {"type": "boolean", "description": "Spread pods across nodes"},
    "monitoring": {"type": "boolean",
                   "description": "Prometheus ServiceMonitor, alert rules and Grafana dashboard"},
}


def _enum_values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


@cache
def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an answers file."""
    preset = {"type": "object", "properties": _PRESET_FIELDS, "additionalProperties": False}
    return _strict_anchors({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://agentgen.dev/schema/spec.json",
        "title": "agentgen answers",
        "description": "Answers that fully determine a generated deployment repository.",
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 40,
                     "not": {"pattern": YAML_NON_STRING},
                     "description": f"Project name: {_NAME_RULE}"},
            "package": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]{0,63}$",
                        "not": {"anyOf": [{"pattern": YAML_NON_STRING},
                                          {"enum": [*PYTHON_KEYWORDS, *RESERVED_PACKAGES]}]},
                        "description": "Python package, at most 64 characters, not a Python keyword "
                                       "(default: name with '-' replaced by '_')"},
            "description": {"type": "string", "maxLength": 500, "pattern": DESCRIPTION_PATTERN,
                            "description": "Description of the agent: at most 500 characters that "
                                           "YAML and TOML can carry (no control characters but tab "
                                           "and line breaks, no lone surrogates or non-characters)"},
            "python_version": {"enum": list(PYTHON_VERSIONS), "default": "3.12",
                               "description": "Python version of the image"},
            "scale": {"enum": _enum_values(Scale), "default": "dev",
                      "description": "Scale preset; see `agentgen presets`"},
            "targets": {"type": "array", "items": {"enum": _enum_values(Target)},
                        "minItems": 1, "uniqueItems": True, "default": ["compose"],
                        "description": "Deployment targets"},
            "secrets": {"enum": _enum_values(SecretsBackend),
                        "description": "Secrets backend (default: kubernetes with a Kubernetes "
                                       "target, else env)"},
            "llm_provider": {"enum": _enum_values(LLMProvider), "default": "fake",
                             "description": "Chat model provider (fake: offline, deterministic)"},
            "agent_secrets": {
                "type": "array", "uniqueItems": True, "maxItems": MAX_AGENT_SECRETS, "default": [],
                "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,62}$",
                          "not": {"anyOf": [{"pattern": YAML_NON_STRING},
                                            {"enum": list(RUNTIME_SECRETS)}]},
                          "description": "a secret's setting name in lower case (e.g. "
                                         "tavily_api_key): a letter, then letters, digits or '_', "
                                         "at most 63, none of the runtime's own ("
                                         + ", ".join(RUNTIME_SECRETS) + ")"},
                "description": "Secrets the agent reads besides the model provider's key, by "
                               "setting name (e.g. [tavily_api_key]): every target carries each "
                               "one and the runtime places it in the agent's environment "
                               "(init: derived from the project's dependencies)"},
            "llm_model": {"type": "string", "minLength": 1, "maxLength": 100,
                          "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                          "description": "Chat model name (default depends on llm_provider)"},
            "image_registry": {"type": "string",
                               "pattern": r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$",
                               "default": "ghcr.io/example", "description": "Container registry"},
            # the distribution reference grammar's path: components joined by '.', '_', '__' or
            # dashes ("a--a", a valid name, is a valid repository), separated by '/'
            "image_repository": {"type": "string",
                                 "pattern": r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
                                            r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$",
                                 "description": "Image repository (default: name)"},
            "image_digest": {"type": "string", "pattern": r"^(sha256:[a-f0-9]{64})?$", "default": "",
                             "description": "Optional image digest sha256:<64 hex>; pins the image"},
            "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                          "maxLength": NAMESPACE_MAX,
                          "description": f"Kubernetes namespace, a DNS-1123 label of at most "
                                         f"{NAMESPACE_MAX} characters (its staging overlay adds "
                                         f"'-staging'; always quoted in YAML) (default: name)"},
            "ingress_host": {"type": "string", "maxLength": 253,
                             "pattern": r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
                             "description": "Public host name of at most 253 characters "
                                            "(default: <name>.example.com)"},
            "checkpoint_retention_days": {"type": "integer", "minimum": 1, "maximum": 3650,
                                          "default": 30,
                                          "description": "Days of checkpoints kept by retention cleanup"},
            "overrides": {**preset, "default": {},
                          "description": "Preset values to override for this project"},
            "mode": {"enum": _enum_values(Mode), "default": "new",
                     "description": "new: a repository around the sample agent; init: agentgen's "
                                    "deployment files added to an existing LangGraph project "
                                    "(set by `agentgen init`)"},
            "own_dockerignore": {"type": "boolean", "default": True,
                                 "description": "agentgen writes .dockerignore (init: false when "
                                                "the project has its own)"},
            "semantic_search": {"type": "boolean", "default": False,
                                "description": "PostgreSQL with pgvector, for the store's semantic "
                                               "search (init: true when langgraph.json sets "
                                               "store.index)"},
            "custom_auth": {"type": "boolean", "default": False,
                            "description": "langgraph.json auth.path handlers authenticate every "
                                           "request and no API keys are generated (init: true "
                                           "when langgraph.json sets auth.path)"},
        },
    })


def _strict_anchors(schema: Any) -> Any:
    """Every pattern's final `$` also refuses a trailing newline, which Python's `re` (used by
    jsonschema) lets `$` match before; the lookahead changes nothing for ECMA-262 engines."""
    if isinstance(schema, dict):
        return {k: (v[:-1] + "$(?!\n)" if k == "pattern" and isinstance(v, str) and v.endswith("$")
                    else _strict_anchors(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_strict_anchors(v) for v in schema]
    return schema


_STATIC_DEFAULTS = {key: prop["default"] for key, prop in spec_schema()["properties"].items()
                    if "default" in prop}


@dataclass(frozen=True)
class Spec:
    """A validated spec. Build it with `load_spec`; `to_answers()` gives copier's data."""

    name: str
    package: str
    description: str
    python_version: str
    scale: Scale
    targets: tuple[Target, ...]
    secrets: SecretsBackend
    llm_provider: LLMProvider
    llm_model: str
    agent_secrets: tuple[str, ...]
    image_registry: str
    image_repository: str
    image_digest: str
    namespace: str
    ingress_host: str
    checkpoint_retention_days: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    mode: Mode = Mode.NEW
    own_dockerignore: bool = True
    semantic_search: bool = False
    custom_auth: bool = False

    @cached_property
    def preset(self) -> dict[str, Any]:
        """The effective settings of the scale: the preset with the overrides applied."""
        return {**presets()[self.scale], **self.overrides}

    def to_answers(self) -> dict[str, Any]:
        """The answers as plain data (copier's `data`, the answers file)."""
        return {
            "name": self.name,
            "package": self.package,
            "description": self.description,
            "python_version": self.python_version,
            "scale": self.scale.value,
            "targets": [t.value for t in self.targets],
            "secrets": self.secrets.value,
            "llm_provider": self.llm_provider.value,
            "llm_model": self.llm_model,
            "agent_secrets": list(self.agent_secrets),
            "image_registry": self.image_registry,
            "image_repository": self.image_repository,
            "image_digest": self.image_digest,
            "namespace": self.namespace,
            "ingress_host": self.ingress_host,
            "checkpoint_retention_days": self.checkpoint_retention_days,
            "overrides": dict(self.overrides),
            "mode": self.mode.value,
            "own_dockerignore": self.own_dockerignore,
            "semantic_search": self.semantic_search,
            "custom_auth": self.custom_auth,
        }


def default_package(name: str) -> str:
    """The package a name gives when none is set: `-` as `_`, and `<name>_agent` for a Python
    keyword or a package the project must not shadow (the same for `new` and `init`)."""
    package = name.replace("-", "_")
    return f"{package}_agent" if package in RESERVED_PACKAGES or package in PYTHON_KEYWORDS \
        else package


def _with_defaults(answers: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the defaults, including the ones derived from earlier answers."""
    data = {**_STATIC_DEFAULTS, **answers}
    name = data.get("name")
    valid_name = (isinstance(name, str) and re.fullmatch(NAME_PATTERN, name) is not None
                  and re.fullmatch(YAML_NON_STRING, name) is None)
    if valid_name:  # an invalid name is reported once, not again through every derived field
        data.setdefault("package", default_package(name))
        data.setdefault("image_repository", name)
        data.setdefault("namespace", name)
        data.setdefault("ingress_host", f"{name}.example.com")
    data.setdefault("description", f"{name} - a LangGraph agent deployed with agentgen"
                    if valid_name else "")
    targets = data.get("targets")
    if isinstance(targets, list) and "secrets" not in data:
        k8s = any(isinstance(t, str) and t in KUBERNETES_TARGETS for t in targets)
        data["secrets"] = SecretsBackend.KUBERNETES.value if k8s else SecretsBackend.ENV.value
    provider = data.get("llm_provider")
    if isinstance(provider, str) and provider in DEFAULT_MODELS and "llm_model" not in data:
        data["llm_model"] = DEFAULT_MODELS[provider]
    return data


def _field_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_problem(error: Any) -> FieldProblem:
    path = _field_path(error.absolute_path)
    schema = error.schema
    kind = error.validator
    if kind == "enum":
        allowed = ", ".join(str(v) for v in schema["enum"])
        return FieldProblem(path, f"{_short(error.instance)} is not one of: {allowed}")
    if kind == "additionalProperties":
        extra = sorted((_short(k) if not isinstance(k, str) else k[:60]
                        for k in set(error.instance) - set(schema.get("properties", {}))), key=str)
        allowed = ", ".join(schema.get("properties", {}))
        where = f"{path}." if path else ""
        return FieldProblem(
            ", ".join(f"{where}{key}" for key in extra), f"unknown key (allowed: {allowed})"
        )
    if kind == "required":
        missing = error.message.split("'")[1]
        return FieldProblem(f"{path}.{missing}" if path else missing, "is required")
    if kind == "type":
        return FieldProblem(path, f"expected {schema['type']}, got {_type_name(error.instance)} "
                                  f"{_short(error.instance)}")
    if kind in {"pattern", "maxLength", "minLength", "not"} and "description" in schema:
        return FieldProblem(path, f"{_short(error.instance)} is invalid; expected {schema['description']}")
    if kind == "uniqueItems":
        return FieldProblem(path, f"{_short(error.instance)} lists a value more than once")
    return FieldProblem(path, _short(error.message, 200))


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut to `limit` characters (a 10 MB value is not
    echoed back)."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlist = short.maxdict = 6
    short.maxlevel = 2
    text = short.repr(value) if not isinstance(value, str) or len(value) > limit else repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _quantity(value: str) -> Fraction:
    match = _QUANTITY.match(value)
    assert match, value  # the schema's pattern already admitted it
    return Fraction(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def _cross_field_problems(data: Mapping[str, Any]) -> list[FieldProblem]:
    """Rules that span fields (kept in this one function)."""
    problems = [FieldProblem(key, f"{_short(value)} ends in a line break (no value may)")
                for key, value in data.items()
                if isinstance(value, str) and value.endswith(("\n", "\r"))]
    targets = set(data["targets"])
    secrets = data["secrets"]
    k8s = bool(targets & KUBERNETES_TARGETS)
    if secrets in KUBERNETES_ONLY_BACKENDS and not k8s:
        problems.append(FieldProblem(
            "secrets", f"{secrets!r} needs target kubernetes or helm; with targets "
                       f"{', '.join(sorted(targets))} use one of: env, aws-secrets-manager, vault"))
    if secrets == SecretsBackend.ENV and k8s:
        problems.append(FieldProblem(
            "secrets", "'env' cannot feed a kubernetes/helm target; use one of: kubernetes, "
                       "sealed-secrets, aws-secrets-manager, vault, gcp-secret-manager, azure-key-vault"))
    cfg = {**presets()[data["scale"]], **data["overrides"]}
    if cfg["hpa_min_replicas"] > cfg["hpa_max_replicas"]:
        problems.append(FieldProblem(
            "overrides.hpa_min_replicas",
            f"{cfg['hpa_min_replicas']} is greater than hpa_max_replicas {cfg['hpa_max_replicas']}"))
    floor = cfg["hpa_min_replicas"] if cfg["hpa_enabled"] else cfg["replicas"]
    if cfg["pdb_enabled"] and cfg["pdb_min_available"] >= floor:
        problems.append(FieldProblem(
            "overrides.pdb_min_available",
            f"{cfg['pdb_min_available']} must be lower than the minimum replica count {floor}, "
            "or no node could ever be drained"))
    for resource in ("cpu", "memory"):
        request, limit = cfg[f"{resource}_request"], cfg[f"{resource}_limit"]
        if _quantity(request) > _quantity(limit):
            problems.append(FieldProblem(
                f"overrides.{resource}_request", f"{request} is above {resource}_limit {limit}"))
    return problems


def _integers_as_integers(data: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 3.0 as an integer: such answers are written as 3, not 3.0 (compose,
    Deployments and values would carry the float)."""
    def integral(value: Any, schema: Mapping[str, Any]) -> Any:
        return int(value) if schema.get("type") == "integer" and isinstance(value, float) else value

    properties = spec_schema()["properties"]
    data = {key: integral(value, properties.get(key, {})) for key, value in data.items()}
    data["overrides"] = {key: integral(value, _PRESET_FIELDS.get(key, {}))
                         for key, value in data["overrides"].items()}
    return data


def load_spec(answers: Mapping[str, Any]) -> Spec:
    """Validate answers (missing ones take their defaults) and return the spec.

    Raises:
        SpecError: listing every invalid field with its path and the allowed values.
    """
    from jsonschema import Draft202012Validator

    data = _with_defaults(answers)
    validator = Draft202012Validator(spec_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        by_field: dict[str, FieldProblem] = {}
        for error in errors:  # one line per field: `name` breaking two rules is one problem
            problem = _schema_problem(error)
            by_field.setdefault(problem.field, problem)
        raise SpecError(list(by_field.values()))
    problems = _cross_field_problems(data)
    if problems:
        raise SpecError(problems)
    data = _integers_as_integers(data)
    return Spec(
        name=data["name"],
        package=data["package"],
        description=data["description"],
        python_version=data["python_version"],
        scale=Scale(data["scale"]),
        targets=tuple(Target(t) for t in data["targets"]),
        secrets=SecretsBackend(data["secrets"]),
        llm_provider=LLMProvider(data["llm_provider"]),
        llm_model=data["llm_model"],
        agent_secrets=tuple(data["agent_secrets"]),
        image_registry=data["image_registry"],
        image_repository=data["image_repository"],
        image_digest=data["image_digest"],
        namespace=data["namespace"],
        ingress_host=data["ingress_host"],
        checkpoint_retention_days=data["checkpoint_retention_days"],
        overrides=MappingProxyType(dict(data["overrides"])),
        mode=Mode(data["mode"]),
        own_dockerignore=data["own_dockerignore"],
        semantic_search=data["semantic_search"],
        custom_auth=data["custom_auth"],
    )


# Bounds of an answers file: a real one is a few hundred bytes, a dozen keys, three levels deep.
MAX_ANSWERS_BYTES = 1 << 20
MAX_ANSWERS_DEPTH = 20
MAX_ANSWERS_ALIASES = 50
MAX_ANSWERS_NODES = 10_000
COPIER_ANSWERS_FILE = ".copier-answers.yml"


class _AnswersFileProblem(Exception):
    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.mark = mark


class _AnswersLoader(yaml.SafeLoader):
    """Safe YAML with bounds: nesting depth and aliases while composing (so that an alias bomb or
    10,000 nested lists fail in bounded time and memory), and no duplicated keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ANSWERS_ALIASES:
                raise _AnswersFileProblem(f"more than {MAX_ANSWERS_ALIASES} aliases",
                                          self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_ANSWERS_DEPTH:
                raise _AnswersFileProblem(f"nested deeper than {MAX_ANSWERS_DEPTH} levels",
                                          self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise _AnswersFileProblem(f"duplicate key {_short(key_node.value)}",
                                              key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_nodes(value: Any, budget: int) -> int:
    """Nodes of the loaded value, aliases expanded, stopping past `budget`."""
    stack, count = [value], 0
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def read_answers_file(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) answers file. Keys starting with `_` (copier's metadata) are allowed,
    and dropped, only in a project's `.copier-answers.yml`.

    Raises:
        ConfigFileError: not a regular file, larger than 1 MiB, unreadable, not UTF-8, YAML syntax
            error (with line:column), duplicated keys, nesting or aliases beyond their bounds, or not
            a mapping.
    """
    data = read_yaml_bounded(path)
    private = [k for k in data if isinstance(k, str) and k.startswith("_")]
    if private and path.name != COPIER_ANSWERS_FILE:
        raise ConfigFileError(f"{path}: unknown key {_short(private[0])} (keys starting with '_' are "
                              f"copier's own, allowed only in {COPIER_ANSWERS_FILE})")
    return {k: v for k, v in data.items() if k not in private}


def read_yaml_bounded(path: Path) -> dict[str, Any]:
    """A YAML mapping read within bounds (every YAML file agentgen reads from a project or a user:
    answers files, `.copier-answers.yml`): a regular file of at most 1 MiB, UTF-8, bounded nesting,
    aliases and values, no duplicated keys.

    Raises:
        ConfigFileError: naming the file (and line:column when YAML says where).
    """
    import stat

    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigFileError(f"{path}: not a regular file (an answers file is a YAML file)")
        if info.st_size > MAX_ANSWERS_BYTES:
            raise ConfigFileError(f"{path}: larger than {MAX_ANSWERS_BYTES // 1024} KiB "
                                  f"({info.st_size} bytes); an answers file is a few lines")
        with path.open("rb") as handle:
            raw = handle.read(MAX_ANSWERS_BYTES + 1)
        if len(raw) > MAX_ANSWERS_BYTES:
            raise ConfigFileError(f"{path}: larger than {MAX_ANSWERS_BYTES // 1024} KiB")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigFileError(f"{path}: cannot read answers file: {reason}") from None
    try:
        loader = _AnswersLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _AnswersFileProblem as exc:
        where = f"{path}:{exc.mark.line + 1}:{exc.mark.column + 1}" if exc.mark else str(path)
        raise ConfigFileError(f"{where}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigFileError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        # (a tag on the wrong node, `!!map demo`, or an integer of over 4300 digits fail in the
        # constructors with plain Python errors)
        raise ConfigFileError(f"{path}: invalid YAML: {_short(str(exc), 200)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: an answers file must be a mapping of field: value, got {_type_name(data)}")
    if _count_nodes(data, MAX_ANSWERS_NODES) > MAX_ANSWERS_NODES:
        raise ConfigFileError(f"{path}: more than {MAX_ANSWERS_NODES} values (aliases expanded)")
    return _join_surrogate_pairs(data)


def _join_surrogate_pairs(value: Any) -> Any:
    """YAML (and so JSON read as YAML) decodes `\\ud83d\\ude00` as two lone surrogates, where
    JSON means one character (what json.dumps writes for an emoji): pairs are joined; a lone
    surrogate stays and is refused by the schema."""
    if isinstance(value, str):
        if any("\ud800" <= c <= "\udfff" for c in value):
            try:
                return value.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                return value
        return value
    if isinstance(value, dict):
        return {_join_surrogate_pairs(k): _join_surrogate_pairs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_surrogate_pairs(v) for v in value]
    return value


def load_json_bounded(raw: bytes, *, what: str) -> Any:
    """JSON from a project file, within the answers files' bounds (1 MiB, nesting).

    Raises:
        ValueError: naming what is wrong (too large, too deep, not UTF-8 JSON).
    """
    if len(raw) > MAX_ANSWERS_BYTES:
        raise ValueError(f"larger than {MAX_ANSWERS_BYTES // 1024} KiB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(_short(str(exc), 200)) from None
    if _depth_over(data, MAX_ANSWERS_DEPTH):
        raise ValueError(f"nested deeper than {MAX_ANSWERS_DEPTH} levels")
    return data


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def parse_data_options(options: Sequence[str]) -> dict[str, Any]:
    """`--data KEY=VALUE` options as answers; VALUE is YAML (`targets=[helm]`, `replicas=3`).

    Raises:
        ConfigFileError: an option without `=`, or a VALUE that is not YAML.
    """
    data: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigFileError(f"--data {option!r}: expected KEY=VALUE")
        try:
            data[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigFileError(f"--data {key}: value is not YAML: {exc}") from None
    return data
