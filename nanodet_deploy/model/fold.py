"""BatchNorm folded into the convolution it follows, in a module's own parameters.

What ONNX export does by constant folding, done on the PyTorch module, for the INT8 paths that quantize a
``torch.export`` graph with the shared recipe's weights (converters/pt2e.py): after folding, every convolution's
weight and bias are plain parameters, and the ONNX export keeps their names as initializer names, so the recipe's
weights (computed on that ONNX) go back to the parameters of the same name.
"""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """``module`` (changed in place and returned) with every BatchNorm2d that reads a Conv2d's output folded
    into that Conv2d and replaced by Identity. Which BN follows which conv is found by running ``example``
    once (a BN whose input is the very tensor a conv returned), so no layout is assumed."""
    made_by, pairs = {}, []

    def conv_hook(conv, _inputs, output):
        made_by[id(output)] = conv

    def bn_hook(bn, inputs, _output):
        conv = made_by.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, bn))

    hooks = [m.register_forward_hook(conv_hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(bn_hook) for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    folded = {id(bn) for _, bn in pairs}
    with torch.no_grad():
        for conv, bn in pairs:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in folded:
                setattr(parent, name, nn.Identity())
    return module
