"""The spec: its JSON Schema, defaults, cross-field rules, and agreement with copier.yml and the CLI."""

from __future__ import annotations

import pytest
import yaml
from jsonschema import Draft202012Validator

from agentgen import SpecError, cli, load_spec, presets, spec_schema
from agentgen._resources import template_dir
from agentgen.spec import LLMProvider, Scale, SecretsBackend, Target


def problems(answers):
    with pytest.raises(SpecError) as info:
        load_spec(answers)
    return info.value.lines()


def test_schema_is_valid_draft_2020_12_and_accepts_a_full_answers_file():
    Draft202012Validator.check_schema(spec_schema())
    assert spec_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    full = load_spec({"name": "demo", "targets": ["helm"], "scale": "large"}).to_answers()
    Draft202012Validator(spec_schema()).validate(full)


def test_defaults_derive_from_earlier_answers():
    spec = load_spec({"name": "my-agent", "targets": ["kubernetes"], "llm_provider": "openai"})
    assert spec.package == "my_agent"
    assert spec.namespace == spec.image_repository == "my-agent"
    assert spec.ingress_host == "my-agent.example.com"
    assert spec.secrets is SecretsBackend.KUBERNETES
    assert spec.llm_model == "gpt-4o-mini"
    assert load_spec({"name": "x"}).secrets is SecretsBackend.ENV


def test_presets_are_data_validated_by_the_schema_and_overridable():
    preset_schema = {k: v for k, v in spec_schema()["properties"]["overrides"].items()
                     if k != "default"}
    for scale in Scale:
        Draft202012Validator(preset_schema).validate(presets()[scale])
        assert set(presets()[scale]) == set(preset_schema["properties"])
    large = presets()["large"]
    assert (large["hpa_min_replicas"], large["hpa_max_replicas"]) == (3, 10)
    assert (large["db_pool_size"], large["db_pool_overflow"]) == (20, 40)
    assert presets()["dev"]["replicas"] == 1 and not presets()["dev"]["hpa_enabled"]
    spec = load_spec({"name": "x", "scale": "large", "overrides": {"db_pool_size": 33}})
    assert spec.preset["db_pool_size"] == 33 and spec.preset["replicas"] == 3


@pytest.mark.parametrize("name", ["My_App", "-x", "x" * 64, "../../etc", "a-", "9lives", ""])
def test_invalid_names_name_the_field_and_the_rule(name):
    (line,) = problems({"name": name})
    assert line.startswith("name: ") and "DNS-1123" in line


@pytest.mark.parametrize(("answers", "field", "allowed"), [
    ({"scale": "huge"}, "scale", "dev, small, medium, large"),
    ({"secrets": "keepass"}, "secrets", "env, kubernetes, sealed-secrets"),
    ({"targets": ["compose", "nomad"]}, "targets[1]", "compose, kubernetes, helm, langgraph-platform"),
    ({"llm_provider": "cohere"}, "llm_provider", "openai, anthropic, fake"),
    ({"python_version": "3.9"}, "python_version", "3.11, 3.12, 3.13"),
])
def test_unknown_choices_list_the_allowed_values(answers, field, allowed):
    (line,) = problems({"name": "demo", **answers})
    assert line.startswith(f"{field}: ") and allowed in line


def test_unknown_keys_and_wrong_types_are_reported_field_by_field():
    lines = problems({"name": "demo", "sacle": "dev", "targets": "compose",
                      "overrides": {"replicas": "3", "colour": 1}})
    assert "sacle: unknown key (allowed: name, package," in lines[0]
    assert any(line.startswith("overrides.colour: unknown key") for line in lines)
    assert "overrides.replicas: expected integer, got string '3'" in lines
    assert "targets: expected array, got string 'compose'" in lines


@pytest.mark.parametrize(("answers", "needle"), [
    ({"secrets": "kubernetes"}, "secrets: 'kubernetes' needs target kubernetes or helm"),
    ({"secrets": "sealed-secrets", "targets": ["compose"]}, "needs target kubernetes or helm"),
    ({"secrets": "env", "targets": ["helm"]}, "secrets: 'env' cannot feed a kubernetes/helm target"),
    ({"overrides": {"hpa_min_replicas": 5, "hpa_max_replicas": 2}},
     "overrides.hpa_min_replicas: 5 is greater than hpa_max_replicas 2"),
    ({"scale": "small", "overrides": {"pdb_min_available": 2}},
     "overrides.pdb_min_available: 2 must be lower than the minimum replica count 2"),
    ({"overrides": {"memory_request": "2Gi", "memory_limit": "1Gi"}},
     "overrides.memory_request: 2Gi is above memory_limit 1Gi"),
])
def test_conflicting_choices_are_refused(answers, needle):
    assert any(needle in line for line in problems({"name": "demo", **answers}))


@pytest.mark.parametrize(("request_", "limit"), [
    ("700m", "0.7"), ("0.7", "700m"), ("50m", "0.05"), ("1000m", "1"), ("1Gi", "1073741824"),
    ("1000M", "1G"), ("0.1", "100m"),
])
def test_equal_quantities_in_other_notations_are_accepted(request_, limit):
    resource = "memory" if request_[-1] in "iGM" or request_.isdigit() and len(request_) > 3 else "cpu"
    spec = load_spec({"name": "demo", "overrides": {f"{resource}_request": request_,
                                                     f"{resource}_limit": limit}})
    assert spec.preset[f"{resource}_limit"] == limit


def test_cli_help_choices_match_the_spec_enums():
    for text, enum in [(cli.SCALES, Scale), (cli.TARGETS, Target), (cli.SECRETS, SecretsBackend)]:
        assert text.split(", ") == [m.value for m in enum]


def test_copier_yml_agrees_with_the_spec():
    """copier.yml keeps plain `copier copy` usable: same questions, choices and defaults."""
    with open(template_dir() / "copier.yml", encoding="utf-8") as fh:
        docs = list(yaml.safe_load_all(fh.read().replace("!include", "")))
    questions = {k: v for k, v in docs[0].items() if not k.startswith("_")}
    props = spec_schema()["properties"]
    assert set(questions) == set(props)

    def values(choices):
        if isinstance(choices, list):
            return choices
        return [c["value"] if isinstance(c, dict) else c for c in choices.values()]

    for key, enum in [("scale", Scale), ("targets", Target), ("secrets", SecretsBackend),
                      ("llm_provider", LLMProvider)]:
        assert values(questions[key]["choices"]) == [m.value for m in enum], key
    assert values(questions["python_version"]["choices"]) == props["python_version"]["enum"]
    for key, prop in props.items():
        if "default" in prop and "{{" not in str(questions[key].get("default")):
            assert questions[key]["default"] == prop["default"], key


@pytest.mark.parametrize("name", ["class", "import", "fastapi", "tests"])
def test_a_name_that_is_a_keyword_or_a_reserved_package_gets_an_agent_package(name):
    """As init derives it: refusing the name with a message about `package`, a field the user never
    set, was wrong."""
    assert load_spec({"name": name}).package == f"{name}_agent"


def test_integral_floats_are_integers():
    spec = load_spec({"name": "demo", "checkpoint_retention_days": 30.0,
                      "overrides": {"replicas": 3.0, "hpa_max_replicas": 6.0}})
    assert type(spec.checkpoint_retention_days) is int and spec.checkpoint_retention_days == 30
    assert type(spec.preset["replicas"]) is int and type(spec.preset["hpa_max_replicas"]) is int


def test_json_surrogate_pair_escapes_are_one_character(tmp_path):
    """What json.dumps writes for an emoji ("\\ud83d\\ude00") was refused as two lone surrogates."""
    import json

    from agentgen.spec import read_answers_file

    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"name": "demo", "description": "smile \U0001F600"}))
    assert "\\ud83d" in path.read_text()
    assert load_spec(read_answers_file(path)).description == "smile \U0001F600"


@pytest.mark.parametrize("field", ["description", "name", "llm_model", "ingress_host"])
def test_no_value_may_end_in_a_line_break(field):
    with pytest.raises(SpecError) as info:
        load_spec({"name": "demo", field: ("demo" if field == "name" else "x.example.com") + "\n"})
    assert str(info.value).startswith(f"{field}:")
    if field == "description":  # free text: the only field whose pattern admits line breaks
        assert "line break" in str(info.value)


@pytest.mark.parametrize("name", ["a--a", "a-b", "x---y-z"])
def test_a_valid_name_gives_a_valid_image_repository(name):
    """The name is the image repository's default: every valid name is a valid repository."""
    assert load_spec({"name": name}).image_repository == name


@pytest.mark.parametrize("repository", ["a..b", "a_-b", "-a", "a/", "A", "a___b"])
def test_image_repositories_outside_the_reference_grammar_are_refused(repository):
    with pytest.raises(SpecError, match="image_repository"):
        load_spec({"name": "demo", "image_repository": repository})
