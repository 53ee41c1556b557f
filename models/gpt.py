#!/usr/bin/env python3
"""Builds a GPT-2-shaped decoder (random, seeded weights) with a KV cache, for the streaming endpoints.

    /usr/bin/python3 models/gpt.py tiny  examples/models/tiny-gpt.onnx     # committed: tests and demo
    /usr/bin/python3 models/gpt.py small /tmp/gpt2-small.onnx              # GPT-2 small dims, for the GPU bench
    /usr/bin/python3 models/gpt.py tiny  examples/models/tiny-gpt-kv16.onnx --kv fp16   # the cache in FP16
    /usr/bin/python3 models/gpt.py tiny  examples/models/tiny-gpt-lora.onnx --lora      # LoRA adapters per row
    /usr/bin/python3 models/gpt.py small /tmp/gpt2-hf.onnx --no-logits-to-keep          # Hugging Face's inputs only
    /usr/bin/python3 models/gpt.py tiny  examples/models/tiny-embed.onnx --encoder      # a text encoder: /v1/embeddings
    /usr/bin/python3 models/gpt.py mini  /tmp/mini-embed.onnx --encoder                 # all-MiniLM-L6-v2's dims, for bench:embeddings

Inputs:  input_ids INT64 [batch, seq], position_ids INT64 [batch, seq], attention_mask INT64 [batch, past+seq],
         past_key_values.{i}.key / .value FP32 [batch, heads, past, head_dim],
         logits_to_keep INT64 [1] (Hugging Face's argument: logits of the last N positions only, 0 = all)
Outputs: logits FP32 [batch, seq or logits_to_keep, vocab], present.{i}.key / .value FP32 [batch, heads, past+seq, head_dim],
         new_key_values.{i}.key / .value FP32 [batch, heads, seq, head_dim] (this step's only; optional for infergate)
With --lora, also lora_slot INT64 [batch] and lora.{i}.attn.c_attn.a FP32 [adapters, n_embd, rank] / .b FP32
[adapters, rank, 3 * n_embd]: every row's adapter, applied to the attention's input projection (models/lora.py
writes adapters in PEFT's layout). The weights are the same as without it: slot 0 of zeros gives the same model.
With --kv fp16 the past, present and new_key_values tensors are FLOAT16 (the arithmetic stays FP32, cast at
the edges): the cache the caller keeps and sends with every decode step is half the bytes.
--encoder builds a BERT-shaped encoder from the same blocks instead (bidirectional attention, no cache):
input_ids, attention_mask INT64 [batch, seq] in, last_hidden_state FP32 [batch, seq, n_embd] out (the layout of
Optimum's feature-extraction exports), metadata pooling=mean.
The vocabulary is GPT-2's 50257 tokens, so the real GPT-2 tokenizer (gpt-tokenizer) drives it.
Only Debian's python3-onnx and python3-numpy are needed.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZES = {
    "tiny": dict(n_embd=32, n_layer=2, n_head=2, n_ctx=512),
    "mini": dict(n_embd=384, n_layer=6, n_head=12, n_ctx=512),  # all-MiniLM-L6-v2's dimensions (with --encoder)
    "small": dict(n_embd=768, n_layer=12, n_head=12, n_ctx=1024),
}
VOCAB = 50257


class Graph:
    """Nodes and seeded random initializers of one graph, built up by name."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.inits, self.nodes = [], []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def w(self, name, shape, std=0.02):
        return self.init(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def const(self, name, values, dtype=np.int64):
        """A constant, made once per name (layers share theirs)."""
        if any(t.name == name for t in self.inits):
            return name
        return self.init(name, np.array(values, dtype=dtype))

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], **attrs))
        return name

    def layer_norm(self, x, name, n_embd):
        ones, zeros = np.ones(n_embd, np.float32), np.zeros(n_embd, np.float32)
        return self.node("LayerNormalization", [x, self.init(name + "_g", ones), self.init(name + "_b", zeros)], name, axis=-1, epsilon=1e-5)

    def linear(self, x, p, name, n_in, n_out, out=None, std=0.02):
        mm = self.node("MatMul", [x, self.w(p + "w_" + name, [n_in, n_out], std)], p + name + "_mm")
        return self.node("Add", [mm, self.init(p + "b_" + name, np.zeros(n_out, np.float32))], out or p + name)

    def token_embedding(self, n_embd):
        # The biggest tensor (vocab x n_embd): stored as FP16 to halve the file, used as FP32.
        wte16 = self.init("wte16", (self.rng.standard_normal((VOCAB, n_embd)) * 0.02).astype(np.float16))
        return self.node("Cast", [wte16], "wte", to=TensorProto.FLOAT)

    def qkv_heads(self, h, p, n_embd, n_head, lora=None):
        """The layer's queries, keys and values, each [batch, heads, seq, head_dim] (lora: see lora_delta)."""
        x = self.layer_norm(h, p + "ln1", n_embd)
        qkv = self.linear(x, p, "qkv", n_embd, 3 * n_embd)
        if lora is not None:
            qkv = self.node("Add", [qkv, self.lora_delta(x, lora, p + "qkv")], p + "qkv_adapted")
        self.nodes.append(helper.make_node("Split", [qkv, self.const("split3", [n_embd] * 3)], [p + "q", p + "k", p + "v"], axis=-1))
        heads_shape = self.const("heads_shape", [0, 0, n_head, n_embd // n_head])
        return [self.node("Transpose", [self.node("Reshape", [x, heads_shape], x + "_r")], x + "_t", perm=[0, 2, 1, 3]) for x in (p + "q", p + "k", p + "v")]

    def lora_delta(self, x, module, name):
        """
        Multi-LoRA for one linear layer, every row its own adapter (Punica's batched gather): the adapters' A and B
        come in stacked as inputs ([adapters, in, rank] and [adapters, rank, out], slot 0 all zeros: no adapter),
        `lora_slot` [batch] picks each row's, and the row's delta is x A B (the scaling folded into B).
        """
        a = self.node("Gather", [module + ".a", "lora_slot"], name + "_lora_a", axis=0)
        b = self.node("Gather", [module + ".b", "lora_slot"], name + "_lora_b", axis=0)
        return self.node("MatMul", [self.node("MatMul", [x, a], name + "_lora_xa"), b], name + "_lora")

    def attend(self, h, q, k, v, bias, p, n_embd, n_head):
        """h + the attention of q over k/v (bias: 0 where a query may look, -1e9 elsewhere) and its projection."""
        scale = self.const("scale", 1.0 / np.sqrt(n_embd // n_head), np.float32)
        scores = self.node("Mul", [self.node("MatMul", [q, self.node("Transpose", [k], p + "k_T", perm=[0, 1, 3, 2])], p + "qk"), scale], p + "scores")
        probs = self.node("Softmax", [self.node("Add", [scores, bias], p + "masked")], p + "probs", axis=-1)
        ctx = self.node("Transpose", [self.node("MatMul", [probs, v], p + "ctx")], p + "ctx_t", perm=[0, 2, 1, 3])
        merged = self.node("Reshape", [ctx, self.const("merge_shape", [0, 0, n_embd])], p + "ctx_m")
        return self.node("Add", [h, self.linear(merged, p, "o", n_embd, n_embd, p + "attn")], p + "h_attn")

    def feed_forward(self, h, p, n_embd):
        """h + the MLP of its layer norm (GELU, exact: 0.5 * x * (1 + erf(x / sqrt 2)))."""
        f = self.linear(self.layer_norm(h, p + "ln2", n_embd), p, "fc", n_embd, 4 * n_embd)
        erf = self.node("Erf", [self.node("Mul", [f, self.const(p + "rsqrt2", 1 / np.sqrt(2), np.float32)], p + "fc_s")], p + "erf")
        gelu = self.node("Mul", [self.node("Mul", [f, self.const(p + "half", 0.5, np.float32)], p + "fc_h"), self.node("Add", [erf, self.const(p + "onef", 1.0, np.float32)], p + "erf1")], p + "gelu")
        return self.node("Add", [h, self.linear(gelu, p, "proj", 4 * n_embd, n_embd)], p + "h_out")

    def model(self, name, inputs, outputs, props):
        model = helper.make_model(helper.make_graph(self.nodes, name, inputs, outputs, self.inits), opset_imports=[helper.make_opsetid("", 17)], producer_name="infergate/models/gpt.py")
        model.ir_version = 8
        helper.set_model_props(model, {k: str(v) for k, v in props.items()})
        return model


def build(n_embd, n_layer, n_head, n_ctx, kv=TensorProto.FLOAT, logits_to_keep=True, seed=20261122, lora=False):
    g = Graph(seed)
    node, const = g.node, g.const
    head_dim = n_embd // n_head
    wte = g.token_embedding(n_embd)
    wpe = g.w("wpe", [n_ctx, n_embd], 0.01)
    h = node("Add", [node("Gather", [wte, "input_ids"], "tok_emb"), node("Gather", [wpe, "position_ids"], "pos_emb")], "h0")

    # Additive attention bias [batch, 1, seq, past+seq]: 0 where a query may look (causal and not padding), -1e9 elsewhere.
    past_len = node("Squeeze", [node("Shape", ["past_key_values.0.key"], "past_shape", start=2, end=3)], "past_len")
    seq_len = node("Squeeze", [node("Shape", ["input_ids"], "seq_shape", start=1, end=2)], "seq_len")
    total = node("Add", [past_len, seq_len], "total_len")
    one = const("one", 1)
    k_pos = node("Range", [const("zero", 0), total, one], "k_pos")
    q_pos = node("Range", [past_len, total, one], "q_pos")
    causal = node("LessOrEqual", [node("Unsqueeze", [k_pos, const("ax0", [0])], "k_row"), node("Unsqueeze", [q_pos, const("ax1", [1])], "q_col")], "causal")
    keep = node("Cast", [node("Unsqueeze", ["attention_mask", const("ax12", [1, 2])], "mask4")], "mask_bool", to=TensorProto.BOOL)
    allowed = node("And", [causal, keep], "allowed")
    bias = node("Where", [allowed, const("zero_f", 0.0, np.float32), const("neg_f", -1e9, np.float32)], "attn_bias")
    const("scale", 1.0 / np.sqrt(head_dim), np.float32)
    const("heads_shape", [0, 0, n_head, head_dim])
    const("merge_shape", [0, 0, n_embd])
    const("split3", [n_embd, n_embd, n_embd])

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
    ] + ([helper.make_tensor_value_info("logits_to_keep", TensorProto.INT64, [1])] if logits_to_keep else [])
    if lora:
        inputs.append(helper.make_tensor_value_info("lora_slot", TensorProto.INT64, ["batch"]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "kept", VOCAB])]
    for i in range(n_layer):
        p = f"l{i}_"
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        inputs += [helper.make_tensor_value_info(n, kv, ["batch", n_head, "past", head_dim]) for n in (past_k, past_v)]
        outputs += [helper.make_tensor_value_info(f"present.{i}.{part}", kv, ["batch", n_head, "total", head_dim]) for part in ("key", "value")]
        # The step's own keys/values too: a caller that keeps the cache itself fetches these, not the
        # whole present, and saves copying every sequence's cache back from the GPU each step.
        outputs += [helper.make_tensor_value_info(f"new_key_values.{i}.{part}", kv, ["batch", n_head, "seq", head_dim]) for part in ("key", "value")]

        # Hugging Face's name for the layer (PEFT adapters for GPT-2 target attn.c_attn): lora.{i}.attn.c_attn.a/.b
        module = f"lora.{i}.attn.c_attn"
        if lora:
            inputs.append(helper.make_tensor_value_info(module + ".a", TensorProto.FLOAT, ["adapters", n_embd, "rank"]))
            inputs.append(helper.make_tensor_value_info(module + ".b", TensorProto.FLOAT, ["adapters", "rank", 3 * n_embd]))
        q, k, v = g.qkv_heads(h, p, n_embd, n_head, module if lora else None)
        if kv == TensorProto.FLOAT:
            g.nodes.append(helper.make_node("Identity", [k], [f"new_key_values.{i}.key"]))
            g.nodes.append(helper.make_node("Identity", [v], [f"new_key_values.{i}.value"]))
            k_all = node("Concat", [past_k, k], f"present.{i}.key", axis=2)
            v_all = node("Concat", [past_v, v], f"present.{i}.value", axis=2)
        else:  # the cache crosses the graph's edge in `kv`, the arithmetic stays FP32
            for part, new, past in (("key", k, past_k), ("value", v, past_v)):
                g.nodes.append(helper.make_node("Cast", [new], [f"new_key_values.{i}.{part}"], to=kv))
                joined = node("Concat", [node("Cast", [past], p + part + "_past32", to=TensorProto.FLOAT), new], p + part + "_all", axis=2)
                g.nodes.append(helper.make_node("Cast", [joined], [f"present.{i}.{part}"], to=kv))
            k_all, v_all = p + "key_all", p + "value_all"
        h = g.feed_forward(g.attend(h, q, k_all, v_all, bias, p, n_embd, n_head), p, n_embd)

    hf = g.layer_norm(h, "lnf", n_embd)
    # A prefill needs only the last position's logits, and over a 50257-token vocabulary computing and
    # writing every position's is most of a small model's prefill: keep the last `logits_to_keep` (0: all).
    if logits_to_keep:
        hf = node("Slice", [hf, node("Neg", ["logits_to_keep"], "keep_from"), const("keep_to", [2**62]), const("keep_axis", [1])], "lnf_kept")
    node("MatMul", [hf, node("Transpose", [wte], "wte_T", perm=[1, 0])], "logits")
    return g.model("gpt", inputs, outputs, dict(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_ctx=n_ctx, vocab=VOCAB, tokenizer="gpt2"))


def build_encoder(n_embd, n_layer, n_head, n_ctx, seed=20261123, pooling="mean", classes=0):
    """
    A BERT-shaped text encoder (bidirectional attention over the unpadded positions) for /v1/embeddings; with
    `classes`, a sequence classifier instead (a cross-encoder when 1: /v1/rerank, /v1/score).
    """
    g = Graph(seed + classes)
    node, const = g.node, g.const
    wte = g.token_embedding(n_embd)
    wpe = g.w("wpe", [n_ctx, n_embd], 0.01)
    seq_len = node("Squeeze", [node("Shape", ["input_ids"], "seq_shape", start=1, end=2)], "seq_len")
    positions = node("Range", [const("zero", 0), seq_len, const("one", 1)], "positions")
    h = node("Add", [node("Gather", [wte, "input_ids"], "tok_emb"), node("Gather", [wpe, positions], "pos_emb")], "h0")
    # Additive attention bias [batch, 1, 1, seq]: every position looks at every unpadded one, so a text's
    # embedding does not depend on what it is batched with (padding is masked out, not attended to).
    keep = node("Cast", [node("Unsqueeze", ["attention_mask", const("ax12", [1, 2])], "mask4")], "mask_bool", to=TensorProto.BOOL)
    bias = node("Where", [keep, const("zero_f", 0.0, np.float32), const("neg_f", -1e9, np.float32)], "attn_bias")
    for i in range(n_layer):
        p = f"l{i}_"
        q, k, v = g.qkv_heads(h, p, n_embd, n_head)
        h = g.feed_forward(g.attend(h, q, k, v, bias, p, n_embd, n_head), p, n_embd)
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"]) for name in ("input_ids", "attention_mask")]
    props = dict(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_ctx=n_ctx, vocab=VOCAB, tokenizer="gpt2")
    if not classes:
        g.nodes.append(helper.make_node("LayerNormalization", [h, g.init("lnf_g", np.ones(n_embd, np.float32)), g.init("lnf_b", np.zeros(n_embd, np.float32))], ["last_hidden_state"], axis=-1, epsilon=1e-5))
        outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", n_embd])]
        return g.model("encoder", inputs, outputs, dict(props, pooling=pooling))
    # The classifier's head: the mean of the unpadded positions' states, then a linear layer to the classes' logits.
    hf = g.layer_norm(h, "lnf", n_embd)
    mask = node("Unsqueeze", [node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT), const("ax2", [2])], "mask3")
    summed = node("ReduceSum", [node("Mul", [hf, mask], "masked_h"), const("ax1", [1])], "sum_h", keepdims=0)
    counted = node("ReduceSum", [mask, const("ax1", [1])], "count", keepdims=0)
    # Spread wider than the blocks' weights: a random model's scores should differ visibly between texts.
    g.linear(node("Div", [summed, counted], "pooled"), "", "cls", n_embd, classes, "logits", std=1.0)
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    return g.model("classifier", inputs, outputs, props)


if __name__ == "__main__":
    args = argparse.ArgumentParser(description="GPT-2-shaped decoder with random weights")
    args.add_argument("size", choices=SIZES)
    args.add_argument("out")
    args.add_argument("--kv", choices=["fp32", "fp16"], default="fp32", help="the KV cache's element type")
    args.add_argument("--no-logits-to-keep", action="store_true", help="no logits_to_keep input: every position's logits, always")
    args.add_argument("--encoder", action="store_true", help="a text encoder (last_hidden_state) for embeddings instead")
    args.add_argument("--lora", action="store_true", help="multi-LoRA inputs (lora_slot, lora.{i}.attn.c_attn.a/.b): adapters per row")
    args.add_argument("--classes", type=int, default=0, help="with --encoder: a sequence classifier with this many classes (1: a cross-encoder)")
    a = args.parse_args()
    size, out = a.size, a.out
    kv = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[a.kv]
    if a.encoder:
        model = build_encoder(**SIZES[size], classes=a.classes)
    else:
        model = build(**SIZES[size], kv=kv, logits_to_keep=not a.no_logits_to_keep, lora=a.lora)
    if size != "small":
        onnx.checker.check_model(model)
        onnx.save(model, out)
    else:  # over 2 GB of protobuf is not allowed: keep the weights beside the graph
        onnx.save(model, out, save_as_external_data=True, location=out.split("/")[-1] + ".data")
    print(out, sum(np.prod(t.dims) for t in model.graph.initializer), "parameters")
