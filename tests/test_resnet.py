"""ResNet stems: ResNet-50's layout (convolution weights counted independently), token grid
sizes, weight standardisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.resnet import ResNetStem, StdConv


def _resnet50_conv_weights() -> int:
    """Convolution weights of torchvision's ResNet-50 trunk, from its published layout."""
    total = 7 * 7 * 3 * 64
    channels_in = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        width = 64 * 2**stage
        for block in range(blocks):
            total += channels_in * width + 9 * width * width + width * 4 * width
            if block == 0:
                total += channels_in * 4 * width  # projection shortcut
            channels_in = 4 * width
    return total


def test_resnet50_has_the_published_convolutions_and_a_7x7_grid_at_224():
    stem = ResNetStem(width=256, variant="resnet50")
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.uint8)
    shapes = jax.eval_shape(stem.init, jax.random.key(0), images)["params"]
    leaves = jax.tree_util.tree_leaves_with_path(shapes)
    conv = sum(
        x.size
        for path, x in leaves
        if jax.tree_util.keystr(path).endswith("['kernel']") and len(x.shape) == 4
    )
    assert conv == _resnet50_conv_weights() == 23_454_912
    out = jax.eval_shape(lambda p, x: stem.apply({"params": p}, x), shapes, images)
    assert out.shape == (2, 49, 256)


@pytest.mark.slow  # compiles a ResNet forward pass: about 20 s
def test_small_variants_run_and_give_the_documented_grids():
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 75, 75, 3)), jnp.uint8)
    small = ResNetStem(width=16, variant="resnet_small", posemb="sincos2d")
    assert jax.eval_shape(small.init_with_output, jax.random.key(0), images)[0].shape == (
        2,
        25,
        16,
    )
    tiny = ResNetStem(width=16, variant="resnet_tiny", posemb="sincos2d")
    out, _ = jax.jit(tiny.init_with_output)(jax.random.key(0), images)
    assert out.shape == (2, 100, 16)
    assert np.isfinite(np.asarray(out)).all()


def test_std_conv_standardises_its_kernel():
    conv = StdConv(4, (3, 3), padding="SAME", use_bias=False)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 5, 5, 2)), jnp.float32)
    params = conv.init(jax.random.key(0), x)["params"]
    kernel = np.asarray(params["kernel"], np.float64)
    scaled = {"kernel": 3.0 * params["kernel"] + 1.0}  # standardisation removes scale and shift
    np.testing.assert_allclose(
        conv.apply({"params": params}, x), conv.apply({"params": scaled}, x), atol=1e-5
    )
    std = (kernel - kernel.mean((0, 1, 2))) / kernel.std((0, 1, 2))
    expected = jax.lax.conv_general_dilated(
        x, jnp.asarray(std, jnp.float32), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(conv.apply({"params": params}, x), expected, atol=1e-4)
