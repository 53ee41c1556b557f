#!/usr/bin/env python3
"""Exports the GPU benchmark's vision models on the device machine (torch, torchvision; random weights —
no model hub is reachable):
  resnet50-fp32.onnx   x FP32 [N,3,224,224]
  resnet50-fp16.onnx   x FP16 [N,3,224,224]
  resnet50-u8.onnx     x UINT8 [N,224,224,3] (NHWC, raw pixels): /255, mean/std and the NCHW transpose
                       happen inside the graph, in FP16 — a quarter of the bytes to copy per image.
usage: python3 bench/gpu/export.py OUT_DIR
"""
import inspect
import os
import sys

import torch
import torchvision


class Uint8Front(torch.nn.Module):
    """uint8 NHWC pixels -> normalised fp16 NCHW, then the network."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).half() * 255)
        self.register_buffer("inv_std", (1 / (torch.tensor([0.229, 0.224, 0.225]) * 255)).view(1, 3, 1, 1).half())

    def forward(self, x):
        x = x.permute(0, 3, 1, 2).half()
        return self.net((x - self.mean) * self.inv_std)


def export(module, example, path):
    # The TorchScript exporter (dynamo=False) where the dynamo one is the default (torch >= 2.9).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(module, example, path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, opset_version=17, **legacy)
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    # Tracing runs the network once: fp16 convolutions want the GPU (older torch has no CPU fp16 conv).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = torchvision.models.resnet50(weights=None).eval().to(device)
    with torch.no_grad():
        export(net, torch.randn(1, 3, 224, 224, device=device), os.path.join(out, "resnet50-fp32.onnx"))
        half = net.half()
        export(half, torch.randn(1, 3, 224, 224, device=device).half(), os.path.join(out, "resnet50-fp16.onnx"))
        pixels = torch.randint(0, 255, (1, 224, 224, 3), dtype=torch.uint8, device=device)
        export(Uint8Front(half).to(device), pixels, os.path.join(out, "resnet50-u8.onnx"))
