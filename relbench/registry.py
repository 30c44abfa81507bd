"""Name -> factory registries that turn config sub-dicts into objects.

Every factory (dataset, model, method, optimizer) is called with its sub-config as
keyword arguments, so a misspelt key fails at once with an error that names it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from relbench.errors import UsageError


class Registry:
    """Factories of one kind (``"model"``, ``"method"``...) by name.

    ``section`` names the config section a factory's keyword arguments come from, for
    error messages (``{name}`` is the factory's name); ``kind`` by default.
    """

    def __init__(
        self, kind: str, factories: Mapping[str, Callable[..., Any]], section: str | None = None
    ):
        self.kind = kind
        self.factories = dict(factories)
        self.section = section or kind

    def names(self) -> list[str]:
        return sorted(self.factories)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self.factories:
            raise UsageError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self.factories[name]

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
