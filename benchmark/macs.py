"""Counting a Keras model's multiply-accumulates per input: :func:`count_macs`.

Every convolution (plain, depthwise, separable, transposed) and dense layer counts, nested models
too; biases, batch norm, activations, pooling and element-wise products do not, as in the papers
whose figures the registry quotes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras


def _positions(tensor: Any, data_format: str) -> int:
    shape = tuple(tensor.shape)
    spatial = shape[2:] if data_format == "channels_first" else shape[1:-1]
    if any(d is None for d in spatial):
        raise ValueError(f"count_macs needs a fixed input size; a layer's output is {shape}")
    return math.prod(int(d) for d in spatial)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one input: every convolution and dense layer, nested models too.

    Not counted, as in the papers: biases, batch norm, activations, pooling, element-wise sums
    and products (squeeze-and-excitation scaling, residual additions), resizing.
    """
    import keras

    conv = (
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
    )
    separable = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
    transpose = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    )
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        for node in layer._inbound_nodes:
            if not node.input_tensors or not node.output_tensors:
                continue
            x, y = node.input_tensors[0], node.output_tensors[0]
            if isinstance(layer, separable):
                depthwise = math.prod(layer.depthwise_kernel.shape)
                pointwise = math.prod(layer.pointwise_kernel.shape)
                total += _positions(y, layer.data_format) * (depthwise + pointwise)
            elif isinstance(layer, transpose):
                total += _positions(x, layer.data_format) * math.prod(layer.kernel.shape)
            elif isinstance(layer, conv):
                kernel = getattr(layer, "depthwise_kernel", None)
                kernel = layer.kernel if kernel is None else kernel
                total += _positions(y, layer.data_format) * math.prod(kernel.shape)
            elif isinstance(layer, keras.layers.Dense):
                positions = math.prod(int(d) for d in y.shape[1:-1])
                total += positions * math.prod(layer.kernel.shape)
    return total
