"""How the chart gives the exporter its Scenario credentials: an existing Secret mounted as
files (so that a rotation applies without a restart), accounts with Secrets of their own,
demo mode with none, and install NOTES that say how to give them when there are none.
"""

from __future__ import annotations

from pathlib import Path

from testkit.helm import (
    ci_values,
    container,
    install_dry_run,
    load_values,
    of_kind,
    render,
    volume_of,
)


def test_existing_secret_creates_no_secret() -> None:
    values = ci_values("existing-secret")
    config = load_values(values)
    objects = render(values)
    assert not of_kind(objects, "Secret")
    env = {e["name"]: e for e in container(objects)["env"]}
    # Both as files of one mounted Secret, so that a rotated pair applies without a restart.
    assert set(env) == {"SCENARIO_API_KEY_FILE", "SCENARIO_API_SECRET_FILE"}
    key_file = Path(env["SCENARIO_API_KEY_FILE"]["value"])
    secret_file = Path(env["SCENARIO_API_SECRET_FILE"]["value"])
    assert key_file.parent == secret_file.parent
    volume = volume_of(objects, key_file.parent)
    assert volume["projected"]["sources"] == [{"secret": {
        "name": config["existingSecret"],
        "items": [{"key": config["existingSecretKeys"]["apiKey"], "path": key_file.name},
                  {"key": config["existingSecretKeys"]["apiSecret"],
                   "path": secret_file.name}]}}]


def test_accounts_with_their_own_secrets_create_no_secret() -> None:
    objects = render(sets=["accounts[0].name=a", "accounts[0].apiKey=k",
                           "accounts[0].existingSecret=s"])
    assert not of_kind(objects, "Secret")


def test_demo_needs_no_credentials() -> None:
    objects = render(ci_values("demo"))
    assert "--demo" in container(objects)["args"]
    assert not of_kind(objects, "Secret")
    assert "env" not in container(objects)


def test_notes_without_credentials_say_how_to_give_them() -> None:
    notes = install_dry_run([]).partition("NOTES:")[2]
    assert "no Scenario credentials" in notes
    assert "existingSecret=" in notes
    assert "port-forward service/" in notes
