"""The real-homeserver test kit is a pytest plugin any project with civicbot installed gets."""

from __future__ import annotations

from importlib.metadata import entry_points


def test_the_kit_is_registered_as_a_pytest_plugin(pytestconfig):
    (found,) = [e for e in entry_points(group="pytest11") if e.name == "civicbot"]
    assert found.value == "civicbot.testing.pytest_plugin"
    assert pytestconfig.pluginmanager.has_plugin("civicbot")  # loaded here through it


def test_the_kit_offers_its_fixtures(pytestconfig):
    kit = pytestconfig.pluginmanager.get_plugin("civicbot")
    for name in ("synapse", "residents", "encrypted_residents", "bots", "shared_bot"):
        assert hasattr(kit, name), name
