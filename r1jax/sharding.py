"""The device mesh and the one table that maps logical axis names to mesh axes.

Parameters and activations are annotated with logical names ('embed', 'heads', 'batch',
...) where they are defined (`r1jax.model.param_axes`, `constrain` calls in the forward
pass). `RULES` below is the only place that says which mesh axis each name is split
over; change it here and every parameter, optimizer moment and activation follows.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.config import MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or tuple of mesh axes). Names not listed are replicated.
RULES: dict[str, str | tuple[str, ...]] = {
    "batch": ("data", "fsdp"),  # activations and inputs: split the batch over all data-like axes
    "embed": "fsdp",            # parameters' model dimension: ZeRO-3 style fully sharded weights
    "vocab": "tensor",          # embedding rows / logits columns
    "heads": "tensor",          # attention heads (Megatron-style tensor parallelism)
    "kv_heads": "tensor",
    "mlp": "tensor",            # MLP hidden width
}


def make_mesh(spec: MeshConfig | str, devices: Sequence[Any] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'tensor') mesh over `devices` (default: all devices)."""
    cfg = MeshConfig.parse(spec) if isinstance(spec, str) else spec
    devices = list(jax.devices() if devices is None else devices)
    if cfg.size != len(devices):
        raise ValueError(f"mesh data={cfg.data} x fsdp={cfg.fsdp} x tensor={cfg.tensor} = {cfg.size} devices, "
                         f"but {len(devices)} are available; the sizes must multiply to the device count")
    return Mesh(np.asarray(devices).reshape(cfg.data, cfg.fsdp, cfg.tensor), MESH_AXES)


def logical_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> P:
    """PartitionSpec for an array with logical `axes`, dropping mesh axes that don't divide.

    A dimension is only split over mesh axes whose product divides it (e.g. 2 KV heads on a
    tensor axis of 4 stay replicated) so that every preset runs on every mesh.
    """
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {tuple(axes)} do not match array shape {tuple(shape)}")
    used: set[str] = set()
    out = []
    for name, dim in zip(axes, shape):
        rule = RULES.get(name) if name else None
        mesh_axes = (rule,) if isinstance(rule, str) else tuple(rule or ())
        kept: list[str] = []
        for ax in mesh_axes:
            size = mesh.shape[ax]
            if ax not in used and size > 1 and dim % (math.prod(mesh.shape[a] for a in kept) * size) == 0:
                kept.append(ax)
        used.update(kept)
        out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return P(*out)


def is_axes(x: Any) -> bool:
    """True for a leaf of a logical-axes tree: a tuple of axis names (str or None)."""
    return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def tree_shardings(mesh: Mesh, axes_tree: Any, abstract_tree: Any) -> Any:
    """NamedShardings for `abstract_tree` (e.g. from `jax.eval_shape`) given its logical axes."""
    return jax.tree.map(lambda axes, x: NamedSharding(mesh, logical_spec(axes, x.shape, mesh)),
                        axes_tree, abstract_tree, is_leaf=is_axes)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """Annotate an activation with logical axes; a no-op outside a `jax.set_mesh` context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(axes, x.shape, mesh))
