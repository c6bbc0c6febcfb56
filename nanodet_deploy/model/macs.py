"""Multiply-accumulates of the model, counted from its convolutions (bench's GFLOP/s)."""

from __future__ import annotations


def count_macs(module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass, counted once from the graph: every convolution's output
    elements x (input channels / groups) x kernel area."""
    import torch

    total = 0

    def hook(conv, inputs, output):
        nonlocal total
        total += output.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, input_size[1], input_size[0]))
    finally:
        for handle in handles:
            handle.remove()
    return total
