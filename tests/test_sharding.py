"""Mesh construction and the logical-axis rules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from babyjax.model.sharding import (
    MESH_AXES,
    constrain,
    logical_to_spec,
    make_mesh,
    named_sharding,
    tree_shardings,
    use_mesh,
)


def per_device_bytes(tree) -> int:
    """Bytes of the addressable shard on the first device, summed over the arrays of `tree`."""
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))


def mesh_cfg(data: int = -1, fsdp: int = 1, tensor: int = 1) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})


@pytest.mark.parametrize(
    "sizes, shape", [((-1, 1, 1), (8, 1, 1)), ((2, 4, 1), (2, 4, 1)), ((1, -1, 2), (1, 4, 2)), ((2, 2, 2), (2, 2, 2))]
)
def test_make_mesh(sizes, shape):
    mesh = make_mesh(mesh_cfg(*sizes))
    assert mesh.axis_names == MESH_AXES and tuple(mesh.shape.values()) == shape
    assert mesh.size == len(jax.devices()) == 8


def test_make_mesh_on_given_devices():
    mesh = make_mesh(mesh_cfg(), jax.devices()[2:5])
    assert tuple(mesh.shape.values()) == (3, 1, 1) and set(mesh.devices.flat) == set(jax.devices()[2:5])


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((3, 1, 1), "needs 3 devices but 8 are available"),
        ((-1, 3, 1), "does not fit 8 devices"),
        ((-1, -1, 1), "at most one may be -1"),
        ((2, 0, 4), "sizes must be positive"),
    ],
)
def test_mesh_that_does_not_fit(sizes, message):
    with pytest.raises(ValueError, match=message) as err:
        make_mesh(mesh_cfg(*sizes))
    assert "\n" not in str(err.value)


def test_logical_rules():
    mesh = make_mesh(mesh_cfg(2, 2, 2))
    assert logical_to_spec(("batch", "length", "embed")) == P(("data", "fsdp"), None, None)  # fsdp used once
    assert logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert logical_to_spec(("vocab", "embed")) == P("tensor", "fsdp")
    assert logical_to_spec(("embed", "heads", "kv")) == P("fsdp", "tensor", None)
    # mesh axes that do not divide a dimension are dropped: prime vocab replicated, batch 6 only over 'data'
    assert logical_to_spec(("vocab", "embed"), (97, 32), mesh) == P(None, "fsdp")
    assert logical_to_spec(("batch", None), (6, 5), mesh) == P("data", None)
    assert named_sharding(mesh, ("embed", "mlp"), (32, 64)).spec == P("fsdp", "tensor")
    with pytest.raises(ValueError, match="unknown logical axis"):
        logical_to_spec(("embd",))


def test_tree_shardings_and_bytes():
    mesh = make_mesh(mesh_cfg(1, 4, 2))
    tree = {
        "w": nnx.Param(jnp.ones((32, 64)), out_sharding=("embed", "mlp"), eager_sharding=False),
        "b": nnx.Param(jnp.ones((64,)), out_sharding=("mlp",), eager_sharding=False),
        "count": jnp.zeros((), jnp.int32),
    }
    shardings = tree_shardings(tree, mesh)
    assert shardings["w"].get_value().spec == P("fsdp", "tensor")
    assert shardings["b"].get_value().spec == P("tensor")
    assert shardings["count"].spec == P()
    placed = jax.device_put(tree, shardings)
    assert per_device_bytes(placed["w"]) == 32 * 64 * 4 // 8
    assert per_device_bytes(placed) == (32 * 64 // 8 + 64 // 2 + 1) * 4


def test_constrain_inside_jit():
    mesh = make_mesh(mesh_cfg(2, 4, 1))
    x = jnp.arange(8 * 3 * 4, dtype=jnp.float32).reshape(8, 3, 4)
    assert constrain(x, ("batch", "length", "embed")) is x  # no mesh: a no-op

    @jax.jit
    def f(x):
        return constrain(x * 2, ("batch", "length", "embed"))

    with use_mesh(mesh):
        y = f(x)
    assert y.sharding.spec[0] == ("data", "fsdp") and y.addressable_shards[0].data.shape == (1, 3, 4)
    np.testing.assert_array_equal(y, x * 2)
