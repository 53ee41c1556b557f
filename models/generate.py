#!/usr/bin/env python3
"""Builds the small ONNX models that the demo config, the tests and the benchmarks use.

Weights are random but seeded, so every run writes the same bytes.
Needs only Debian's python3-onnx and python3-numpy:  /usr/bin/python3 models/generate.py [OUT_DIR]
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
rng = np.random.default_rng(20261122)


def weight(name, shape, scale=None):
    scale = scale if scale is not None else 1.0 / np.sqrt(shape[0])
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def save(graph, out_dir, file):
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="infergate/models/generate.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out_dir, file))


def identity(out_dir):
    """y = x for any [N, D]: the gateway-overhead model (a 4 KB tensor is [1, 1024])."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "D"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "D"])],
    )
    save(graph, out_dir, "identity.onnx")


def mlp(out_dir, file, sizes):
    """A ReLU multilayer perceptron with a softmax head: x [N, sizes[0]] -> probs [N, sizes[-1]]."""
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits += [weight(f"w{i}", [a, b]), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        os.path.basename(file).removesuffix(".onnx"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", sizes[-1]])],
        inits,
    )
    save(graph, out_dir, file)


def dtypes(out_dir):
    """One input and one output per KServe datatype, so every codec path runs through ONNX Runtime."""
    kinds = [("fp32", TensorProto.FLOAT), ("fp16", TensorProto.FLOAT16), ("i64", TensorProto.INT64),
             ("i32", TensorProto.INT32), ("u8", TensorProto.UINT8), ("flag", TensorProto.BOOL)]
    nodes = []
    for name, _ in kinds:
        # Real work per dtype (not only Identity): numbers are doubled, booleans negated.
        if name == "flag":
            nodes.append(helper.make_node("Not", [name], [f"{name}_out"]))
        else:
            nodes.append(helper.make_node("Add", [name, name], [f"{name}_out"]))
    graph = helper.make_graph(
        nodes,
        "dtypes",
        [helper.make_tensor_value_info(n, t, ["N", 4]) for n, t in kinds],
        [helper.make_tensor_value_info(f"{n}_out", t, ["N", 4]) for n, t in kinds],
    )
    save(graph, out_dir, "dtypes.onnx")


def slow(out_dir, steps=20000):
    """x [N, 16] -> y [N, 16] after `steps` sequential tanh(x @ W) steps: a model that takes tens of ms
    whatever the batch, so tests can fill queues and pass deadlines without big weights."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "w"], ["m"]), helper.make_node("Tanh", ["m"], ["h_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", 16])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["steps", "", "x"], ["y"], body=body)],
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
        [numpy_helper.from_array(np.array(steps, np.int64), "steps"), weight("w", [16, 16])],
    )
    save(graph, out_dir, "slow.onnx")


def cnn(out_dir, file, channels, size=32, classes=10):
    """A small image classifier, x [N, 3, size, size] -> probs [N, classes]: 3x3 convolutions reuse
    their few weights at every pixel, so a batch costs milliseconds while the file stays small."""
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(channels, channels[1:])):
        inits += [weight(f"k{i}", [b, a, 3, 3], scale=1.0 / np.sqrt(9 * a)), numpy_helper.from_array(np.zeros(b, np.float32), f"c{i}")]
        nodes += [helper.make_node("Conv", [prev, f"k{i}", f"c{i}"], [f"v{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"v{i}"], [f"a{i}"])]
        prev = f"a{i}"
    inits += [weight("head", [channels[-1], classes]), numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["pool"]),
              helper.make_node("Reshape", ["pool", "flat"], ["feat"]),
              helper.make_node("MatMul", ["feat", "head"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(
        nodes,
        file.removesuffix(".onnx"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels[0], size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    save(graph, out_dir, file)


def pixels(out_dir):
    """UINT8 images [N, 224, 224, 3] -> each image's first pixel [N, 3]: no compute, so a benchmark of it
    measures only how fast image-sized tensors travel from the client to a replica."""
    const = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["corner"]), helper.make_node("Reshape", ["corner", "flat"], ["y"])],
        "pixels",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 224, 224, 3])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, ["N", 3])],
        [const("starts", [0, 0]), const("ends", [1, 1]), const("axes", [1, 2]), const("flat", [0, 3])],
    )
    save(graph, out_dir, "pixels.onnx")


def pixels_mean(out_dir):
    """UINT8 images [N, 224, 224, 3] -> mean of each channel / 255 [N, 3]: a few passes over every byte, so a
    run takes about as long as reading its batch; for the benchmark of where a replica's session runs."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["xf", "scale"], ["xs"]),
         helper.make_node("ReduceMean", ["xs"], ["y"], axes=[1, 2], keepdims=0)],
        "pixels-mean",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 224, 224, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale")],
    )
    save(graph, out_dir, "pixels-mean.onnx")


def tenants(out_dir):
    """A multiplexed model's models (models/tenants/{model_id}.onnx in the demo): MLPs x [N, 64] -> probs [N, 3]
    of the same tensors, each with its own weights (its own seed), as per-customer fine-tunes would be."""
    global rng
    os.makedirs(os.path.join(out_dir, "tenants"), exist_ok=True)
    for seed, name in enumerate(["alpha", "beta"]):
        kept, rng = rng, np.random.default_rng(seed)
        mlp(out_dir, os.path.join("tenants", f"{name}.onnx"), [64, 16, 3])
        rng = kept


def versions(out_dir):
    """A versioned model's versions (models/scorer/{version}/model.onnx in the demo, Triton's repository layout):
    MLPs x [N, 64] -> probs [N, 3], each version retrained (its own seed), as a model's releases would be."""
    global rng
    for version in [1, 2, 3]:
        os.makedirs(os.path.join(out_dir, "scorer", str(version)), exist_ok=True)
        kept, rng = rng, np.random.default_rng(100 + version)
        mlp(out_dir, os.path.join("scorer", str(version), "model.onnx"), [64, 16, 3])
        rng = kept


def sampler(out_path, scaled=True):
    """The replica's sampling head: softmax(logits * inv_temperature) and argmax per row, vectorised by
    ONNX Runtime (a JavaScript Math.exp loop over a 50257-token vocabulary costs ~1 ms per token). Unscaled:
    for steps whose rows are all at temperature 1 (what clients send by default), no Mul — a pass over every
    row and a batch-sized buffer fewer."""
    inputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "vocab"])]
    nodes = [helper.make_node("Softmax", ["scaled" if scaled else "logits"], ["probs"], axis=-1),
             helper.make_node("ArgMax", ["logits"], ["best"], axis=-1, keepdims=0)]
    if scaled:
        inputs.append(helper.make_tensor_value_info("inv_temperature", TensorProto.FLOAT, ["batch", 1]))
        nodes.insert(0, helper.make_node("Mul", ["logits", "inv_temperature"], ["scaled"]))
    graph = helper.make_graph(
        nodes,
        "sampler" if scaled else "sampler_unscaled",
        inputs,
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "vocab"]),
         helper.make_tensor_value_info("best", TensorProto.INT64, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="infergate/models/generate.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "examples", "models")
    os.makedirs(out, exist_ok=True)
    identity(out)
    mlp(out, "mlp.onnx", [64, 128, 10])
    dtypes(out)
    slow(out)
    cnn(out, "cnn-bench.onnx", [3, 16, 16, 16])
    pixels(out)
    pixels_mean(out)
    sampler(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampler.onnx"))
    sampler(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sampler-unscaled.onnx"), scaled=False)
    tenants(out)
    versions(out)
    for f in sorted(os.listdir(out)):
        print(f"{f}: {os.path.getsize(os.path.join(out, f))} bytes")
