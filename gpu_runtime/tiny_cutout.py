"""A tiny stand-in for rembg's u2net model, built locally with the ``onnx`` helper API (nothing downloaded).

It has u2net's signature, so rembg's real session code loads and runs it unchanged:
one input ``input.1``, float32 [1, 3, 320, 320] NCHW, normalised the ImageNet way by rembg;
seven outputs [1, 1, 320, 320] after a sigmoid, the first being the mask rembg reads.

It is not a trained network. Its fixed weights compute "darker than a light studio backdrop":
a 1x1 convolution undoes rembg's normalisation and scores how far the pixel's brightness is
below a threshold, a 5x5 box convolution smooths that score, a sigmoid turns it into a mask.
On a coloured product shot on white it gives a plausible cutout; on anything else, nonsense.
Good for tests and demos of the real loading and inference path, nothing more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "input.1"
SIZE = 320
OUTPUTS = 7
# rembg's u2net normalisation: (pixel / max - mean) / std, per RGB channel.
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_STEEPNESS = 20.0  # logit per unit of brightness below the threshold
_THRESHOLD = 0.78  # brightness (0..1) under which a pixel counts as product
_OPSET = 17
_IR_VERSION = 8  # readable by every onnxruntime since 1.10


def tiny_u2net_model() -> onnx.ModelProto:
    """The tiny model as an in-memory ONNX graph (checked by ``onnx.checker``)."""
    # logit = k * (threshold - mean_c(x_c * std_c + mean_c)) as a 1x1 convolution over the normalised input.
    weight = (-_STEEPNESS * _STD / 3.0).reshape(1, 3, 1, 1).astype(np.float32)
    bias = np.array([_STEEPNESS * (_THRESHOLD - float(_MEAN.mean()))], dtype=np.float32)
    box = np.full((1, 1, 5, 5), 1.0 / 25.0, dtype=np.float32)
    initializers = [
        numpy_helper.from_array(weight, "brightness.weight"),
        numpy_helper.from_array(bias, "brightness.bias"),
        numpy_helper.from_array(box, "smooth.weight"),
    ]
    nodes = [
        helper.make_node(
            "Conv", [INPUT_NAME, "brightness.weight", "brightness.bias"], ["logit"], name="brightness"
        ),
        helper.make_node("Conv", ["logit", "smooth.weight"], ["smooth"], pads=[2, 2, 2, 2], name="smooth"),
        helper.make_node("Sigmoid", ["smooth"], ["d0"], name="side0"),
    ]
    # u2net's six side outputs: here the same score at decreasing sharpness.
    for index in range(1, OUTPUTS):
        scale = np.array([1.0 / (index + 1)], dtype=np.float32)
        initializers.append(numpy_helper.from_array(scale, f"side{index}.scale"))
        nodes.append(
            helper.make_node("Mul", ["smooth", f"side{index}.scale"], [f"side{index}"], name=f"mul{index}")
        )
        nodes.append(helper.make_node("Sigmoid", [f"side{index}"], [f"d{index}"], name=f"side{index}"))
    graph = helper.make_graph(
        nodes,
        "tiny_u2net",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(f"d{index}", TensorProto.FLOAT, [1, 1, SIZE, SIZE])
            for index in range(OUTPUTS)
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="mockup-studio tiny_cutout",
        opset_imports=[helper.make_opsetid("", _OPSET)],
        ir_version=_IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def build_tiny_u2net_onnx(path: Path) -> Path:
    """Write the tiny u2net stand-in to ``path`` (parent folders created) and return ``path``.

    Deterministic: the same bytes every time. Name the file ``<model_name>.onnx`` in the folder
    given to ``BackgroundRemover(model_dir=...)``, e.g. ``models/rembg/u2net.onnx``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    onnx.save_model(tiny_u2net_model(), str(temporary))
    temporary.replace(path)  # a reader never sees half a file
    return path
