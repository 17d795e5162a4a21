"""The stack switcher and the registration form act on the real registry."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as w
from conftest import CANARY, REFERENCE_SEQUENCE

from stackmagic.flavors import ComponentType
from stackmagic.registry import Registry
from stackmagic.widgets import RegistrationForm, StackSwitcher


def test_switcher_shows_stacks_and_activates_one(project: Path, cli) -> None:
    for words in REFERENCE_SEQUENCE:
        cli(*words)
    switcher = StackSwitcher()
    assert list(switcher.choice.options) == ["default", "gcp"]
    assert switcher.choice.value == "gcp"
    assert "gcs" in switcher.table.value and CANARY not in switcher.table.value

    switcher.choice.value = "default"
    switcher.activate.click()
    assert cli("stack", "get").out.strip() == "default"
    assert "Active stack: default" in switcher.status.value


def test_switcher_refresh_picks_up_changes_made_elsewhere(project: Path, cli) -> None:
    switcher = StackSwitcher()
    for words in REFERENCE_SEQUENCE:
        cli(*words)
    switcher.refresh_button.click()
    assert switcher.choice.value == "gcp"


def test_switcher_reports_a_refused_activation(project: Path, cli) -> None:
    cli("init")
    for words in REFERENCE_SEQUENCE[:4]:
        cli(*words)
    config = project / ".stackmagic" / "config.json"
    config.write_text(
        config.read_text().replace('"metadata-store": "sql"', '"metadata-store": "default"')
    )
    switcher = StackSwitcher()
    switcher.choice.value = "gcp"
    switcher.activate.click()
    assert "cannot be reached" in switcher.status.value
    assert cli("stack", "get").out.strip() == "default"


def test_form_fields_follow_the_flavor(project: Path) -> None:
    form = RegistrationForm(ComponentType.METADATA_STORE)
    assert form.flavor.options == ("sqlite", "mysql", "postgresql")
    form.flavor.value = "mysql"
    assert isinstance(form.fields["password"], w.Password)
    assert isinstance(form.fields["port"], w.IntText) and form.fields["port"].value == 3306
    assert form.fields["host"].description == "host *"

    form.flavor.value = "sqlite"
    assert list(form.fields) == ["path"]


def test_form_registers_a_component_with_its_secret_hidden(project: Path, cli) -> None:
    form = RegistrationForm(ComponentType.METADATA_STORE)
    form.flavor.value = "postgresql"
    form.name.value = "team"
    form.fields["host"].value = "db.internal"
    form.fields["database"].value = "ml"
    form.fields["password"].value = CANARY
    form.register.click()

    assert "Registered metadata store 'team'" in form.status.value
    assert form.fields["password"].value == ""
    described = cli("metadata-store", "describe", "team", "--json").out
    assert '"host": "db.internal"' in described and '"port": 5432' in described
    assert CANARY not in described
    registry = Registry.open()
    team = registry.component(ComponentType.METADATA_STORE, "team")
    assert registry.resolve_secret(team, "password") == CANARY


def test_form_shows_a_mistake_and_registers_nothing(project: Path, cli) -> None:
    form = RegistrationForm(ComponentType.ARTIFACT_STORE)
    form.flavor.value = "gcp"
    form.name.value = "bucket"
    form.fields["path"].value = "s3://wrong"
    form.register.click()
    assert "gs://bucket/dir" in form.status.value
    assert "bucket" not in cli("artifact-store", "list").out
