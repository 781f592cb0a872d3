"""Values the chart refuses: ``values.schema.json`` (draft-07, accepting the defaults and
every CI values file, listing exactly the keys of values.yaml) rejects wrong types, typos
and bad formats; the templates fail with a message on contradictory combinations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from testkit.helm import CASES, CHART, RenderError, load_values, render


@pytest.mark.parametrize("override", [
    pytest.param({"replicaCount": "two"}, id="string-for-integer"),
    pytest.param({"serviceMonitor": {"enabled": "yes"}}, id="string-for-boolean"),
    pytest.param({"serviceMonitr": {"enabled": True}}, id="typo-top-level"),
    pytest.param({"serviceMonitor": {"intervall": "30s"}}, id="typo-nested"),
    pytest.param({"serviceMonitor": {"interval": "30 seconds"}}, id="bad-duration"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, id="bad-enum"),
    pytest.param({"accounts": [{"name": "a b", "apiKey": "k", "existingSecret": "s"}]},
                 id="bad-account-name"),
    pytest.param({"accounts": [{"name": "a", "apiKey": "k"}]}, id="account-without-secret"),
    pytest.param({"scenario": {"budgetCreativeUnits": "lots"}}, id="string-for-number"),
    pytest.param({"podAnnotations": {"a": 1}}, id="non-string-annotation"),
    pytest.param({"strategy": {"typ": "Recreate"}}, id="typo-strategy"),
    pytest.param({"podDisruptionBudget": {"minAvailable": "lots"}}, id="bad-min-available"),
    pytest.param({"extraContainers": {"name": "x"}}, id="object-for-list"),
])
def test_schema_rejects_bad_values(override: dict[str, Any], tmp_path: Path) -> None:
    values = tmp_path / "bad-values.yaml"
    values.write_text(yaml.safe_dump(override))
    with pytest.raises(RenderError, match="schema"):
        render(values)


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def test_schema_is_draft_07_and_accepts_the_defaults() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    for values in CASES:
        jsonschema.Draft7Validator(schema).validate(load_values(values))


def test_every_value_is_in_the_schema() -> None:
    """values.yaml and the schema list the same keys (no undocumented knobs)."""
    schema = _schema()

    def walk(values: dict[str, Any], node: dict[str, Any], where: str) -> Iterator[str]:
        properties = node.get("properties")
        if properties is None:
            return
        for key, value in values.items():
            if key not in properties:
                yield f"{where}{key}"
            elif isinstance(value, dict) and value:
                yield from walk(value, properties[key], f"{where}{key}.")

    values = load_values(None)
    assert list(walk(values, schema, "")) == []
    assert set(schema["properties"]) - set(values) == {"global"}


@pytest.mark.parametrize("sets, message", [
    (["existingSecret=x", "scenario.apiKey=k", "scenario.apiSecret=s"], "not existingSecret"),
    (["scenario.apiKey=k"], "set both apiKey and apiSecret"),
    (["demo=true", "existingSecret=x"], "demo"),
    (["accounts[0].name=a", "accounts[0].apiKey=k", "accounts[0].existingSecret=s",
      "scenario.budgetCreativeUnits=5"], "each entry of accounts"),
    (["accounts[0].name=a", "accounts[0].apiKey=k", "accounts[0].existingSecret=s",
      "accounts[1].name=a", "accounts[1].apiKey=k", "accounts[1].existingSecret=s"],
     "used twice"),
    (["web.tls.secretName=tls"], "web.tls.enabled=true"),
    (["web.tls.enabled=true"], "web.tls.secretName"),
    (["web.config.tls_server_config.cert_file=/c"], "web.tls.enabled=true"),
])
def test_contradictory_values_fail_with_a_message(sets: list[str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        render(sets=sets)
