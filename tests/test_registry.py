"""Open registries: register, import paths, installed plugins' entry points."""

import importlib.metadata

import pytest

from relbench import data, methods, models, posthoc
from relbench.errors import UsageError
from relbench.registry import Registry


def _factory(width: int = 1):
    return ("made", width)


def test_register_adds_a_name_that_errors_then_list():
    registry = Registry("model", {"a": _factory})
    registry.register("b", _factory)
    assert registry.make("b", width=3) == ("made", 3)
    with pytest.raises(UsageError, match=r"^unknown model 'c'; choose one of: a, b$"):
        registry.get("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", lambda: None)
    registry.register("a", _factory)  # the same factory again is no conflict


def test_every_registry_has_register():
    for module in (data, models, methods, posthoc):
        assert callable(module.register)


def test_a_config_may_name_a_factory_by_import_path():
    dataset = data.make("relbench.data.embedded:two_moons", num_train=20, num_test=10,
                        num_ood=5, plot_resolution=0)  # fmt: skip
    assert len(dataset.train) == 20
    with pytest.raises(UsageError, match=r"^cannot import factory 'relbench.nosuch:f' "):
        data.make("relbench.nosuch:f")


def _entry_points(*specs):
    def entry_points(group):
        return [importlib.metadata.EntryPoint(n, v, group) for n, v in specs]

    return entry_points


def test_installed_plugins_join_the_names_and_load_when_asked(monkeypatch):
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        _entry_points(("plugged", "tests.test_registry:_factory"), ("broken", "nosuch_mod:f")),
    )
    registry = Registry("dataset", {"own": _factory}, entry_points="relbench.datasets")
    with pytest.raises(UsageError, match=r"choose one of: broken, own, plugged$"):
        registry.get("missing")
    assert registry.make("plugged", width=2) == ("made", 2)
    with pytest.raises(
        UsageError, match=r"^the plugin dataset 'broken' \(nosuch_mod:f\) fails to load: "
    ):
        registry.get("broken")
