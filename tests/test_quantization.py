"""The shared INT8 recipe (nanodet_deploy/quantization.py) on small graphs run by ONNX Runtime: every property
the four writers rely on, checked against a computed reference."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nanodet_deploy import quantization as Q

RNG = np.random.default_rng(0)


def _stats(values):
    stats = Q.TensorStats()
    stats.add_range(values)
    stats.add_histogram(values)
    return stats


def tiny_model(channels=8):
    """data -> 1x1 conv -> LeakyRelu(0.1) -> depthwise 3x3 -> 1x1 conv -> output: the pattern of a ShuffleNetV2
    branch, with channels of very different widths."""
    w1 = RNG.normal(size=(channels, 3, 1, 1)).astype(np.float32) * np.geomspace(0.01, 1, channels)[:, None, None, None]
    w2 = RNG.normal(size=(channels, 1, 3, 3)).astype(np.float32)
    w3 = RNG.normal(size=(4, channels, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((w1, "w1"), (RNG.normal(size=channels) * 0.1, "b1"), (w2, "w2"), (np.zeros(channels), "b2"),
              (w3, "w3"), (np.zeros(4), "b3"))]
    nodes = [helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], name="conv1"),
             helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1, name="act1"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="dw", group=channels, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c2", "w3", "b3"], ["output"], name="conv3")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def run(model, tensor):
    runner = Q.session(model)
    return runner.run(None, {"data": tensor})[0]


TENSORS = [RNG.normal(size=(1, 3, 16, 16)).astype(np.float32) for _ in range(8)]


def test_ranges_hold_zero_and_clip_only_tails():
    values = RNG.normal(size=100_000)
    low, high = Q.asymmetric_range([(_stats(values), 1.0)])
    assert values.min() <= low < 0 < high <= values.max()
    assert Q.asymmetric_range([(_stats(values), 1.0)], "minmax") == (values.min(), values.max())
    # a LeakyReLU reader makes errors below zero count 0.01 as much: the range gives up more of the negatives
    assert Q.asymmetric_range([(_stats(values), 0.1)])[0] > low
    threshold = Q.symmetric_threshold(_stats(values))
    assert 2.5 < threshold < np.abs(values).max()  # MSE clip of a Gaussian on 8 bits: ~3-4 sigma


def test_symmetric_clip_is_the_brute_force_optimum():
    """The histogram clip for Gaussian activations equals a direct search of the clip that minimises the 8-bit
    symmetric quantization error (theory: ~3.9 sigma)."""
    x = RNG.standard_normal(1_000_000).astype(np.float32)
    stats = _stats(x)

    def error(t):
        q = np.clip(np.trunc(x * (127 / t) + np.copysign(0.5, x)), -127, 127)
        return float(np.mean((q * (t / 127) - x) ** 2))

    grid = np.linspace(2.0, 6.0, 81)
    best = grid[np.argmin([error(t) for t in grid])]
    absmax = float(np.abs(x).max())
    assert abs(Q.symmetric_threshold(stats) - best) <= 0.05 + absmax / Q.CANDIDATES
    assert Q.symmetric_threshold(stats, "minmax") == absmax


def test_gridded_weights_give_back_the_same_integers():
    """Writers whose converter quantizes weights itself (absmax / 127 per channel) get exactly our integers."""
    weight = RNG.normal(size=(16, 8, 3, 3)).astype(np.float32)
    q, scales = Q.quantize_weight(weight)
    assert np.abs(q).max() == 127 and np.abs(q * scales[:, None, None, None] - weight).max() <= scales.max() / 2
    conv = Q.ConvQuant("n", "w", "x", "y", weight, q, scales, np.zeros(16, np.float32))
    again, again_scales = Q.quantize_weight(conv.gridded_weight)
    assert np.array_equal(again, q) and np.allclose(again_scales, scales, rtol=1e-6)


def test_bias_correction_removes_the_mean_output_error():
    weight = RNG.normal(size=(6, 4, 1, 1)).astype(np.float32)
    x = RNG.normal(loc=3.0, size=(4, 1000)).astype(np.float32)
    q, scales = Q.quantize_weight(weight)
    bias = np.zeros(6, np.float32)
    corrected = Q.corrected_bias(weight, q, scales, bias, 1, x.mean(axis=1))
    float_out = weight[:, :, 0, 0] @ x
    int8_weight = (q * scales[:, None, None, None])[:, :, 0, 0]
    before = np.abs((int8_weight @ x + bias[:, None]).mean(1) - float_out.mean(1)).max()
    after = np.abs((int8_weight @ x + corrected[:, None]).mean(1) - float_out.mean(1)).max()
    assert after < 1e-4 < before


def test_equalization_keeps_the_float_function_and_evens_the_channels():
    model = tiny_model()
    equalized, pairs = Q.equalize_depthwise(model, TENSORS)
    assert pairs == 1
    equalized, more = Q.equalize_depthwise(equalized, TENSORS, into_depthwise=False, alpha=Q.EQUALIZE_INTO_CONV)
    assert more == 1
    for tensor in TENSORS[:2]:
        assert np.allclose(run(model, tensor), run(equalized, tensor), rtol=1e-4, atol=1e-5)
    widths = [Q.ChannelRange() for _ in range(2)]
    for tensor in TENSORS:
        for width, m in zip(widths, (model, equalized)):
            width.add(Q.session(m, ["a1"]).run(["a1"], {"data": tensor})[0])
    spread = [w.absmax.max() / w.absmax.min() for w in widths]
    # widths 488x apart before; after, equal but for channels narrower than MIN_CHANNEL_SCALE, raised only 64x
    assert spread[0] > 100 and spread[1] == pytest.approx(max(1.0, spread[0] * Q.MIN_CHANNEL_SCALE), rel=0.02)



def regions_model(channels=8, seed=1):
    """The patterns ``equalize_regions`` follows, with channels of very different widths: the stem (conv ->
    LeakyRelu -> MaxPool read by a depthwise and a dense conv), a Ghost block (conv and its depthwise 'cheap'
    conv concatenated, plus a shortcut conv, read by a depthwise conv), and a tensor a Slice also reads (not
    scalable: the slice would change)."""
    rng, half = np.random.default_rng(seed), channels // 2
    widths = np.geomspace(0.01, 1, channels)[:, None, None, None]
    arrays = {"wa": rng.normal(size=(channels, 3, 1, 1)) * widths, "wb": rng.normal(size=(channels, 1, 3, 3)),
              "wc": rng.normal(size=(channels, channels, 1, 1)), "wp": rng.normal(size=(half, channels, 1, 1)),
              "wq": rng.normal(size=(half, 1, 3, 3)) * widths[:half],
              "ws": rng.normal(size=(channels, channels, 1, 1)) * widths,
              "wd": rng.normal(size=(channels, 1, 3, 3)), "wo": rng.normal(size=(4, channels, 1, 1)),
              "ba": rng.normal(size=channels) * 0.1, "bs": rng.normal(size=channels) * 0.1,
              "starts": np.array([0]), "ends": np.array([2]), "axes": np.array([1])}
    inits = [numpy_helper.from_array(a if a.dtype == np.int64 else a.astype(np.float32), n) for n, a in arrays.items()]
    dw = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["data", "wa", "ba"], ["ca"], name="a"),
             helper.make_node("LeakyRelu", ["ca"], ["aa"], alpha=0.1),
             helper.make_node("MaxPool", ["aa"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["pool", "wb"], ["cb"], name="b", group=channels, **dw),
             helper.make_node("Conv", ["pool", "wc"], ["cc"], name="c"),
             helper.make_node("Slice", ["cb", "starts", "ends", "axes"], ["sliced"]),
             helper.make_node("Conv", ["cb", "wp"], ["cp"], name="p"),
             helper.make_node("Conv", ["cp", "wq"], ["cq"], name="q", group=half, **dw),
             helper.make_node("Concat", ["cp", "cq"], ["cat"], axis=1),
             helper.make_node("Conv", ["cc", "ws", "bs"], ["cs"], name="s"),
             helper.make_node("Add", ["cat", "cs"], ["sum"]),
             helper.make_node("Conv", ["sum", "wd"], ["cd"], name="d", group=channels, **dw),
             helper.make_node("Conv", ["cd", "wo"], ["output"], name="o")]
    graph = helper.make_graph(nodes, "regions",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8]),
                               helper.make_tensor_value_info("sliced", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_region_equalization_keeps_the_float_function_and_evens_what_it_reaches():
    model = regions_model()
    equalized, regions = Q.equalize_regions(model, TENSORS)
    assert regions == 4  # pool, cc, sum, cd; cb (a Slice reads it) and cp (only through the Concat) are not scalable
    names = ["output", "sliced", "pool", "sum", "cb"]
    before, after = (Q.session(m, names) for m in (model, equalized))
    widths = {(m, n): Q.ChannelRange() for m in ("before", "after") for n in names[2:]}
    for tensor in TENSORS:
        outputs = [r.run(names, {"data": tensor}) for r in (before, after)]
        for k in range(2):  # the model's outputs are the same
            assert np.allclose(outputs[0][k], outputs[1][k], rtol=1e-4, atol=1e-5)
        for tag, values in zip(("before", "after"), outputs):
            for name, value in zip(names[2:], values[2:]):
                widths[tag, name].add(value)
    spread = {key: w.absmax.max() / w.absmax.min() for key, w in widths.items()}
    # the Ghost block's sum is read only by a depthwise conv: all of the scale, down to MIN_CHANNEL_SCALE
    assert spread["before", "sum"] > 5
    assert spread["after", "sum"] == pytest.approx(max(1.0, spread["before", "sum"] * Q.MIN_CHANNEL_SCALE), rel=0.05)
    # the stem's pool is also read by a dense conv: the square root of the (clamped) scale
    raised = min(spread["before", "pool"], 1 / Q.MIN_CHANNEL_SCALE) ** Q.EQUALIZE_INTO_CONV
    assert spread["after", "pool"] == pytest.approx(spread["before", "pool"] / raised, rel=0.05)
    assert np.allclose(widths["before", "cb"].absmax, widths["after", "cb"].absmax, rtol=1e-4)  # left alone


@pytest.mark.parametrize("outputs, symmetric", [(False, False), (True, False), (False, True)])
def test_qdq_model_runs_the_recipe_in_onnx_runtime(outputs, symmetric):
    model = tiny_model()
    recipe = Q.build_recipe(model, TENSORS)
    assert len(recipe.convs) == 3 and recipe.float_convs == []
    qdq = Q.qdq_model(model, recipe, outputs=outputs, symmetric=symmetric)
    ops = [n.op_type for n in qdq.graph.node]
    # inputs data, a1, c2; with outputs also c1, c2 (the dw output is conv3's input: quantized once), output
    assert ops.count("QuantizeLinear") == (5 if outputs else 3)
    reference, int8 = run(model, TENSORS[0]), run(qdq, TENSORS[0])
    relative = np.square(int8 - reference).sum() / np.square(reference).sum()
    assert 0 < relative < 5e-3  # measured 1.3e-3 with outputs quantized, less without
    kept = Q.qdq_model(model, recipe.keeping_float(["conv3"]), outputs=outputs, symmetric=symmetric)
    assert [n.op_type for n in kept.graph.node].count("QuantizeLinear") < ops.count("QuantizeLinear")
    onnx.checker.check_model(qdq)


@pytest.mark.parametrize("shared", [False, True])
def test_region_equalization_leaves_weights_another_node_shares(shared):
    """Rescaling a weight two convolutions read would change the other one: such a region is left alone."""
    rng = np.random.default_rng(2)
    arrays = {"wa": rng.normal(size=(4, 3, 1, 1)) * np.geomspace(0.01, 1, 4)[:, None, None, None],
              "wa2": rng.normal(size=(4, 3, 1, 1)), "wb": rng.normal(size=(2, 4, 1, 1))}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [helper.make_node("Conv", ["data", "wa"], ["ca"], name="a"),
             helper.make_node("LeakyRelu", ["ca"], ["aa"], alpha=0.1),
             helper.make_node("Conv", ["aa", "wb"], ["output"], name="b"),
             helper.make_node("Conv", ["data", "wa" if shared else "wa2"], ["other"], name="a2")]
    graph = helper.make_graph(nodes, "shared",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 16, 16]),
                               helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    equalized, regions = Q.equalize_regions(model, TENSORS)
    assert regions == (0 if shared else 1)
    before, after = Q.session(model), Q.session(equalized)
    for tensor in TENSORS[:2]:
        for a, b in zip(before.run(None, {"data": tensor}), after.run(None, {"data": tensor})):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-5)
