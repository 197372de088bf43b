"""A transform network as an ONNX graph: what ``fast-style export --onnx`` writes and the onnxruntime
backend runs.

The graph is traced with ``torch.onnx.export`` (the TorchScript-based exporter, which needs no
onnxscript) and its full-resolution output convolution is rewritten to run on 2x2 pixel blocks
(``SpaceToDepth`` / ``DepthToSpace``), which onnxruntime's CPU kernels run faster. Nothing here
imports training code.
"""

from __future__ import annotations

import collections
import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from fast_style.errors import FastStyleError
from fast_style.models import TransformNetwork

__all__ = ["GRAPH_REVISION", "ONNX_OPSET", "onnx_graph"]

ONNX_OPSET = 17
# Bumped whenever onnx_graph() writes a different graph for the same network, so cached graphs are rebuilt.
GRAPH_REVISION = 2
_ELEMENTWISE = ("Sigmoid", "Tanh", "Relu")


class _AlignedNetwork(nn.Module):
    """The network without its pad-and-crop: the graph takes sizes that are multiples of 4."""

    def __init__(self, net: TransformNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if style is None:
            return self.net.forward_aligned(images)
        with self.net.styled(style):
            return self.net.forward_aligned(images)


def onnx_graph(net: TransformNetwork, opset: int = ONNX_OPSET, metadata: dict[str, str] | None = None) -> Any:
    """``net`` as an ``onnx.ModelProto``: input ``image`` and output ``stylized``, dynamic batch and size.

    The graph expects ``H`` and ``W`` that are multiples of the network's ``multiple`` (4). A
    multi-style network's graph has a second input ``style``, ``(1, num_styles)`` style weights for
    the whole batch, so a runtime can pick or mix the styles.
    """
    try:
        import onnx
    except ImportError:
        raise FastStyleError("ONNX export needs the onnx package: pip install onnx") from None
    if opset < 17:
        raise FastStyleError(f"ONNX opset must be at least 17, got {opset}")
    was_training = net.training
    wrapper = _AlignedNetwork(net.cpu().eval()).eval()
    axes = {0: "batch", 2: "height", 3: "width"}
    styles = net.num_styles
    inputs: tuple[torch.Tensor, ...] = (torch.rand(1, 3, 64, 64),)
    names, dynamic = ["image"], {"image": axes, "stylized": axes}
    if styles > 1:
        inputs += (torch.full((1, styles), 1.0 / styles),)
        names.append("style")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                inputs,
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                input_names=names,
                output_names=["stylized"],
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,  # the TorchScript-based exporter needs no onnxscript
            )
    finally:
        net.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    _blocked_output_convs(model)
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def _blocked_weights(weight: np.ndarray, bias: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the conv on ``SpaceToDepth(x, block)`` whose ``DepthToSpace`` (DCR) is ``conv(x)``.

    Output pixel ``(block*p + a, block*q + b)`` of a ``k x k`` conv reads input row ``block*p + a + i``
    for tap ``i``, which is row ``p + (a + i) // block`` of the blocked input, channel group
    ``(a + i) % block``; the blocked conv has ``(k - 1) // block + 1`` taps.
    """
    cout, cin, k, _ = weight.shape
    taps = (k - 1) // block + 1
    blocked = np.zeros((block, block, cout, block, block, cin, taps, taps), dtype=weight.dtype)
    for a in range(block):
        for b in range(block):
            for i in range(k):
                for j in range(k):
                    r, p = (a + i) % block, (a + i) // block
                    s, q = (b + j) % block, (b + j) // block
                    blocked[a, b, :, r, s, :, p, q] = weight[:, :, i, j]
    return blocked.reshape(block * block * cout, block * block * cin, taps, taps), np.tile(
        bias, block * block
    )


def _blocked_output_convs(model: Any, block: int = 2) -> None:
    """Run wide unpadded convs with few outputs (the 9x9 RGB head) on 2x2 pixel blocks, in place.

    onnxruntime's CPU convolutions compute output channels 8 or 16 at a time, so a conv with three
    outputs wastes most of each pass: at 1024x1024 the johnson head took a sixth of the whole
    network. ``SpaceToDepth -> conv -> DepthToSpace`` gives the same result with 12 outputs on a
    quarter of the positions, three to four times faster. An elementwise activation that alone reads the
    conv is moved before the ``DepthToSpace`` so that onnxruntime still fuses it into the conv.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    nodes = list(graph.node)
    rewritten = []
    for node in nodes:
        if node.op_type != "Conv" or len(node.input) != 3 or node.input[1] not in initializers:
            continue
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        weight = numpy_helper.to_array(initializers[node.input[1]])
        bias = initializers.get(node.input[2])
        cout, _, k, k2 = weight.shape
        plain = (
            attrs.get("group", 1) == 1
            and set(attrs.get("strides", [1])) == {1}
            and set(attrs.get("dilations", [1])) == {1}
        )
        if not (
            plain
            and not any(attrs.get("pads", [0]))
            and k == k2 >= 5
            and (k - 1) % block == 0
            and cout * block * block <= 16
            and bias is not None
        ):
            continue
        blocked_weight, blocked_bias = _blocked_weights(weight, numpy_helper.to_array(bias), block)
        stem = node.output[0]
        after = consumers[stem]
        activation = after[0] if len(after) == 1 and after[0].op_type in _ELEMENTWISE else None
        final = activation.output[0] if activation is not None else stem
        graph.initializer.extend(
            [
                numpy_helper.from_array(blocked_weight, f"{stem}_blocked_weight"),
                numpy_helper.from_array(blocked_bias, f"{stem}_blocked_bias"),
            ]
        )
        replacement = [
            helper.make_node("SpaceToDepth", [node.input[0]], [f"{stem}_blocks_in"], blocksize=block),
            helper.make_node(
                "Conv",
                [f"{stem}_blocks_in", f"{stem}_blocked_weight", f"{stem}_blocked_bias"],
                [f"{stem}_blocks"],
                kernel_shape=list(blocked_weight.shape[2:]),
            ),
        ]
        if activation is not None:
            replacement.append(
                helper.make_node(activation.op_type, [f"{stem}_blocks"], [f"{stem}_blocks_activated"])
            )
        replacement.append(
            helper.make_node(
                "DepthToSpace", [replacement[-1].output[0]], [final], blocksize=block, mode="DCR"
            )
        )
        rewritten.append((node, activation, replacement))
    for node, activation, replacement in rewritten:
        index = list(graph.node).index(node)
        graph.node.remove(node)
        if activation is not None:
            graph.node.remove(activation)
        for offset, new in enumerate(replacement):
            graph.node.insert(index + offset, new)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
