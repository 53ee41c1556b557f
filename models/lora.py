#!/usr/bin/env python3
"""Writes LoRA adapters (random, seeded weights) for models/gpt.py's tiny decoder, in PEFT's layout.

    /usr/bin/python3 models/lora.py examples/adapters test/fixtures/adapters   # committed: the demo's, the tests'
    /usr/bin/python3 models/lora.py --small 8 /tmp/adapters-small   # 8 adapters (ranks 8, 16) for gpt.py small --lora (GPU bench)

Each adapter is a folder as PEFT's save_pretrained writes it (what vLLM's --lora-modules and TGI's adapter_id
read): adapter_config.json (r, lora_alpha, target_modules, use_rslora) and adapter_model.safetensors with, per
layer i, base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight [r, n_embd] and .lora_B.weight
[3 * n_embd, r]: the layer's output gains scaling * x A^T B^T, scaling = lora_alpha / r (/ sqrt(r) with rsLoRA).
A trained adapter's B is not zero (PEFT starts it at zero): these are drawn wide enough to change a random
model's greedy text.
The safetensors layout (8-byte little-endian header length, a JSON header of dtype/shape/offsets, the bytes)
is written here directly: Debian has no python3-safetensors. Only python3-numpy is needed.
"""
import json
import os
import struct
import sys

import numpy as np

N_EMBD, N_LAYER = 32, 2  # models/gpt.py's tiny size (--small: GPT-2 small's, 768 and 12)
MODULE = "attn.c_attn"


def save_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writer pads it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def adapter(out_dir, name, seed, r, alpha, rslora=False, b_scale=1.0, targets=(MODULE,), n_embd=N_EMBD, n_layer=N_LAYER):
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(n_layer):
        for module in targets:
            key = f"base_model.model.transformer.h.{i}.{module}"
            out = {"attn.c_attn": 3 * n_embd, "mlp.c_fc": 4 * n_embd}[module]
            tensors[key + ".lora_A.weight"] = rng.standard_normal((r, n_embd)) * 0.5
            tensors[key + ".lora_B.weight"] = rng.standard_normal((out, r)) * 0.5 * b_scale
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    save_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "infergate/tiny-gpt",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": [m.split(".")[-1] for m in targets],
        "fan_in_fan_out": True,
        "use_rslora": rslora,
        "bias": "none",
    }
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--small"]:
        count, out = int(sys.argv[2]), sys.argv[3]
        for k in range(count):
            adapter(out, f"a{k}", seed=100 + k, r=8 if k % 2 == 0 else 16, alpha=16, n_embd=768, n_layer=12)
        print(count, "GPT-2 small adapters in", out)
        sys.exit(0)
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/adapters"
    tests = sys.argv[2] if len(sys.argv) > 2 else "test/fixtures/adapters"
    adapter(out, "sonnets", seed=1, r=4, alpha=8)
    adapter(out, "pirate", seed=2, r=8, alpha=16)
    # The tests' variants of sonnets: scaled the same two other ways (the same text), and with B zero (the base's).
    adapter(tests, "sonnets-half-alpha", seed=1, r=4, alpha=4, b_scale=2.0)
    adapter(tests, "sonnets-rslora", seed=1, r=4, alpha=4, rslora=True)
    adapter(tests, "sonnets-zero", seed=1, r=4, alpha=8, b_scale=0.0)
    adapter(tests, "wide", seed=3, r=4, alpha=8, n_embd=768)  # for GPT-2 small: does not fit the tiny model
    adapter(tests, "mlp", seed=4, r=4, alpha=8, targets=("mlp.c_fc",))  # a layer the model takes no adapter for
    print("adapters in", out, "and", tests)
