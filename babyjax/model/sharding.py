"""Device mesh and logical-axis sharding: the one table `LOGICAL_RULES` maps the logical axes of parameters and
activations ('batch', 'embed', 'vocab', ...) onto the mesh axes ('data', 'fsdp', 'tensor'), so parallelism changes the
mesh config, never the model. A mesh axis is used at most once per array (first dimension wins: an activation
('batch', 'length', 'embed') puts 'fsdp' on the batch) and is dropped where it does not divide the dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from babyjax.errors import InputError

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")

# logical axis -> mesh axes (None = replicated); batches and activations add batch and length to the parameters' names
LOGICAL_RULES: tuple[tuple[str, tuple[str, ...] | str | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),  # model dimension of parameters (FSDP shards weights along it)
    ("vocab", "tensor"),
    ("heads", "tensor"),  # query heads
    ("kv_heads", "tensor"),  # key/value heads (fewer under grouped-query attention)
    ("kv", None),  # per-head feature dimension
    ("mlp", "tensor"),
    ("norm", None),  # norm scales and biases of width d_model
)
_RULES: dict[str, tuple[str, ...]] = {
    name: () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes)) for name, axes in LOGICAL_RULES
}

LogicalNames = Sequence[str | None]


def make_mesh(mesh_cfg: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh from `config.mesh`; one axis may be -1 (= all remaining devices)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [int(mesh_cfg.data), int(mesh_cfg.fsdp), int(mesh_cfg.tensor)]
    n = len(devices)
    described = " x ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise InputError(f"mesh {described}: sizes must be positive and at most one may be -1 (fills the {n} devices)")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n % known:
            raise InputError(f"mesh {described} does not fit {n} devices: the fixed axes ({known}) must divide {n}")
        sizes[sizes.index(-1)] = n // known
    elif known != n:
        raise InputError(
            f"mesh {described} needs {known} devices but {n} are available: "
            f"choose sizes whose product is {n} (e.g. --config.mesh.data=-1)"
        )
    auto = (AxisType.Auto,) * len(MESH_AXES)
    if devices == list(jax.devices())[:n]:
        return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=auto, devices=devices)
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), MESH_AXES, axis_types=auto)


def logical_to_spec(names: LogicalNames, shape: Sequence[int] | None = None, mesh: Any = None) -> PartitionSpec:
    """PartitionSpec for logical `names`; with `shape` and `mesh`, drops mesh axes that do not divide a dimension."""
    used: set[str] = set()
    spec: list[tuple[str, ...] | str | None] = []
    for i, name in enumerate(names):
        if name is not None and name not in _RULES:
            raise ValueError(f"unknown logical axis {name!r}: add it to babyjax.model.sharding.LOGICAL_RULES")
        axes = [a for a in _RULES.get(name, ()) if a not in used] if name else []
        if shape is not None and mesh is not None:
            kept, size = [], 1
            for a in axes:
                if shape[i] % (size * mesh.shape[a]) == 0:
                    kept.append(a)
                    size *= mesh.shape[a]
            axes = kept
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, names: LogicalNames, shape: Sequence[int] | None = None) -> NamedSharding:
    """NamedSharding on `mesh` for logical `names` (of an array of `shape`, if given)."""
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh))


def _leaf_sharding(x: Any, mesh: Mesh) -> Any:
    if isinstance(x, nnx.Variable):  # no logical names: replicated, like any other array
        return x.replace(named_sharding(mesh, x.get_metadata().get("out_sharding") or (), x.get_value().shape))
    return NamedSharding(mesh, PartitionSpec())


def tree_shardings(tree: Any, mesh: Mesh) -> Any:
    """Shardings for a pytree (nnx State, optimizer state, ...): Variables by their logical `out_sharding`
    metadata, every other array replicated. The result is a valid `in/out_shardings` argument for `jax.jit`."""
    return jax.tree.map(lambda x: _leaf_sharding(x, mesh), tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def constrain(x: jax.Array, names: LogicalNames) -> jax.Array:
    """Constrain an activation to the sharding of its logical `names` under the current mesh (`use_mesh`);
    a no-op when no mesh is set (e.g. a model called eagerly on one device)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh))


def use_mesh(mesh: Mesh) -> Any:
    """Context manager making `mesh` current, so `constrain` works inside jit: `with use_mesh(mesh): ...`."""
    return jax.set_mesh(mesh)
