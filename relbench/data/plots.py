"""Figures of what a model predicts over a dataset's input space (as ``Probe``\\ s).

``uncertainty_surface`` predicts on a regular grid over a 2-D input plane and writes

* ``<name>.png``: the predictive uncertainty ``1 - max_k p(k | x)`` (0: certain; at most
  ``1 - 1/K``) over the plane, the training points on top, and one more panel per
  model extra (e.g. an SNGP head's predictive variance, averaged over members and
  classes);
* ``<name>.npz``: the grid and every plotted value, for anyone who wants the numbers.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import numpy as np

from relbench.data.sources import Probe


def plane_grid(bounds: tuple[float, float, float, float], resolution: int) -> np.ndarray:
    """``resolution**2`` points ``[R*R, 2]`` on a grid over ``(x_min, x_max, y_min, y_max)``,
    row-major in y (so ``.reshape(R, R)`` gives an image with y along the first axis)."""
    x_min, x_max, y_min, y_max = bounds
    xs, ys = np.meshgrid(
        np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution)
    )
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def surface_values(
    probs: np.ndarray, extras: Mapping[str, np.ndarray], resolution: int
) -> dict[str, np.ndarray]:
    """Per-grid-point images ``[R, R]``: the uncertainty and each extra's mean."""
    values = {"uncertainty": 1.0 - probs.max(axis=-1)}
    for name, value in extras.items():
        # [M, N, ...] -> [N]: the mean over members and any trailing (e.g. class) axes.
        per_point = np.moveaxis(np.asarray(value), 1, 0).reshape(value.shape[1], -1)
        values[name] = per_point.mean(axis=1)
    return {name: v.reshape(resolution, resolution) for name, v in values.items()}


def uncertainty_surface(
    name: str,
    bounds: tuple[float, float, float, float],
    resolution: int,
    points: np.ndarray,
    labels: np.ndarray,
) -> Probe:
    """A probe that draws the predictive uncertainty over a plane.

    Args:
      name: the file stem (``<name>.png`` and ``<name>.npz`` in the workdir).
      bounds: ``(x_min, x_max, y_min, y_max)`` of the plotted region.
      resolution: grid points per axis.
      points, labels: the training inputs ``[N, 2]`` and labels drawn on top.
    """
    grid = plane_grid(bounds, resolution)

    def write(probs, extras, workdir: pathlib.Path) -> None:
        values = surface_values(probs, extras, resolution)
        np.savez(workdir / f"{name}.npz", grid=grid, **values)
        _draw(values, bounds, points, labels, workdir / f"{name}.png")

    return Probe(name=name, inputs=grid, write=write)


def _draw(values, bounds, points, labels, path: pathlib.Path) -> None:
    from matplotlib.figure import Figure  # imported only when a figure is drawn

    figure = Figure(figsize=(5.0 * len(values), 4.2), layout="constrained")
    for axes, (title, image) in zip(
        figure.subplots(1, len(values), squeeze=False)[0], values.items(), strict=True
    ):
        shown = axes.imshow(image, origin="lower", extent=bounds, cmap="viridis", aspect="auto")
        axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=4, alpha=0.6)
        axes.set_title("1 - max p(y | x)" if title == "uncertainty" else title)
        figure.colorbar(shown, ax=axes)
    figure.savefig(path, dpi=100)
