"""The loop never names a method: no method name, no name of a variable or collection a
method's layers create, and no method hyperparameter appears in relbench/train/ code
(identifiers and string literals; docstrings and comments are prose, not code)."""

import ast
import dataclasses
import functools
import inspect
import pathlib

import jax
import jax.numpy as jnp

from relbench import methods, models
from relbench.train import optimizers

TRAIN = pathlib.Path(__file__).resolve().parents[2] / "relbench" / "train"


def code_words(source: str) -> set[str]:
    """Every identifier and string constant of a module, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            words.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            words.add(node.name)
        elif isinstance(node, ast.alias):
            words.update(node.name.split(".") + ([node.asname] if node.asname else []))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            words.update(
                part for part in node.value.replace("/", " ").split() if part.isidentifier()
            )
    return words


def variable_names(method: str) -> set[str]:
    """The collection, module and variable names of a method's CNN and MLP."""
    m = methods.make(method)
    names = set()
    x = jnp.ones((2, 8, 8, 1))
    inputs = m.init_inputs(x) if m.init_inputs else x
    rngs = {"params": jax.random.key(0), **{s: jax.random.key(1) for s in m.rng_streams}}
    for name in ("cnn", "mlp"):
        model = models.make(name, num_classes=3, layers=m.layers(models.default_layers(name)))
        shapes = jax.eval_shape(functools.partial(model.init, train=False), rngs, inputs)
        for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]:
            names.update(str(getattr(key, "key", key)) for key in path)
    return names


def test_no_method_knowledge_in_the_loop():
    names = set(methods.METHODS.names())
    baseline = variable_names("deterministic")
    for method in methods.METHODS.names():
        names |= variable_names(method) - baseline
        names |= set(methods.hyperparameters(method))
    # The loop's own vocabulary: the Method record's fields (variational's `layers`
    # hyperparameter shares a name with one) and its optimizer's settings (momentum).
    names -= {field.name for field in dataclasses.fields(methods.Method)}
    names -= set(inspect.signature(optimizers.make).parameters)
    found = {path.name: sorted(names & code_words(path.read_text())) for path in TRAIN.glob("*.py")}
    assert not any(found.values()), found


def test_the_word_finder_finds_code_not_prose():
    source = '"""A deep_ensemble doc."""\nx = f(alpha=1)  # sngp\ny = "laplace/precision"\n'
    assert {"alpha", "laplace", "precision", "x", "y", "f"} <= code_words(source)
    assert not {"deep_ensemble", "sngp"} & code_words(source)
