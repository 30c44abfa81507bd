"""Name -> factory registries that turn config sub-dicts into objects.

Every factory (dataset, model, method, optimizer) is called with its sub-config as
keyword arguments, so a misspelt key fails at once with an error that names it.

The registries are open. A factory joins one in any of three ways:

* in code: ``relbench.data.register("my_data", factory)`` (likewise
  ``relbench.models.register``, ``relbench.methods.register``,
  ``relbench.posthoc.register``);
* by a Python entry point of an installed package, in the registry's group
  (``relbench.datasets``, ``relbench.models``, ``relbench.methods``,
  ``relbench.posthoc``): ``my_data = "my_package.data:factory"``, loaded the first time
  the registry is asked for a name it lacks or for its list of names, so that a
  ``pip install``-ed plugin appears in ``relbench train`` and in "choose one of" errors;
* by import path in a config: ``config.dataset.name = "my_package.data:factory"``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from relbench.errors import UsageError


def import_factory(path: str) -> Callable[..., Any]:
    """``"package.module:attribute"`` -> that attribute; a bad path is a UsageError."""
    module_name, _, attribute = path.partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as error:
        raise UsageError(
            f"cannot import factory '{path}' ({type(error).__name__}: {error}); name it as "
            "'package.module:factory' with the package on PYTHONPATH"
        ) from None
    if not callable(target):
        raise UsageError(f"'{path}' is not callable; name a factory function or class")
    return target


class Registry:
    """Factories of one kind (``"model"``, ``"method"``...) by name.

    ``section`` names the config section a factory's keyword arguments come from, for
    error messages (``{name}`` is the factory's name); ``kind`` by default.
    ``entry_points`` is the entry-point group whose installed plugins join the registry.
    """

    def __init__(
        self,
        kind: str,
        factories: Mapping[str, Callable[..., Any]],
        section: str | None = None,
        entry_points: str | None = None,
    ):
        self.kind = kind
        self.factories = dict(factories)
        self.section = section or kind
        self.entry_points = entry_points
        self._plugins_loaded = entry_points is None

    def register(
        self, name: str, factory: Callable[..., Any], replace: bool = False
    ) -> Callable[..., Any]:
        """Adds ``factory`` under ``name`` (returns it, so it can decorate); a name taken
        by another factory is an error unless ``replace``."""
        if ":" in name:
            raise ValueError(f"{self.kind} name '{name}' may not contain ':' (import paths do)")
        known = self.factories.get(name)
        if known is not None and known is not factory and not replace:
            raise ValueError(
                f"{self.kind} '{name}' is already registered ({known!r}); choose another "
                "name or pass replace=True"
            )
        self.factories[name] = factory
        return factory

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=self.entry_points):
            if entry.name not in self.factories:  # built-in and registered names win
                self.factories[entry.name] = _EntryPoint(entry, self.kind)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self.factories)

    def get(self, name: str) -> Callable[..., Any]:
        if ":" in name:
            return import_factory(name)
        if name not in self.factories:
            self._load_plugins()
        if name not in self.factories:
            raise UsageError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        factory = self.factories[name]
        if isinstance(factory, _EntryPoint):
            factory = self.factories[name] = factory.load()
        return factory

    def defaults(self, name: str, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """The named factory's keyword arguments with their defaults (the fields of its
        config section); arguments without a default and ``exclude`` are left out."""
        parameters = inspect.signature(self.get(name)).parameters
        return {
            n: p.default
            for n, p in parameters.items()
            if p.default is not inspect.Parameter.empty
            and n not in exclude
            and n not in ("parent", "name")
            and p.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def make(self, name: str, **kwargs: Any) -> Any:
        """Calls the named factory; an unknown keyword argument is a UsageError naming it."""
        factory = self.get(name)
        where = f"config.{self.section.format(name=name)}"
        check_kwargs(factory, kwargs, where, f"{self.kind} '{name}'")
        return factory(**kwargs)


class _EntryPoint:
    """A plugin's factory, imported when first asked for."""

    def __init__(self, entry: importlib.metadata.EntryPoint, kind: str):
        self.entry, self.kind = entry, kind

    def load(self) -> Callable[..., Any]:
        try:
            return self.entry.load()
        except Exception as error:  # a broken plugin names itself, whatever it raised
            raise UsageError(
                f"the plugin {self.kind} '{self.entry.name}' ({self.entry.value}) fails to "
                f"load: {type(error).__name__}: {error}; fix or uninstall the plugin"
            ) from None


def check_kwargs(
    factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str, what: str
) -> None:
    """Raises a UsageError naming any key of ``kwargs`` that ``factory`` does not take."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        valid = ", ".join(n for n in parameters if n not in ("self", "parent", "name"))
        raise UsageError(f"unknown key {where}.{unknown[0]} for {what}; valid keys: {valid}")
