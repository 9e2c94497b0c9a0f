"""The zoo's full-size networks, each written once as an architecture over a few operations.

``resnet18``, ``resnet50`` (bottleneck, stride on the 3x3 as torchvision), ``mobilenet_v2``
(width 1.0, ReLU6), ``efficientnet_b0`` (MBConv with squeeze-and-excitation and SiLU, as
torchvision), ``vit_tiny`` and ``deit_small`` (/16, pre-norm, exact GELU, class token, learned
positions) on [batch, 3, 224, 224], and ``bert_base`` (the 12-layer post-norm encoder without its
embedding: the input is the embedded sequence [batch, 128, 768]). An architecture calls the
operations of a backend: :class:`Shapes` makes the seeded weights, :class:`Onnx` writes the ONNX
graph (with :mod:`tvm_aie.zoo`'s graph builder), ``tvm_aie.zoo_torch`` computes it in PyTorch,
so every form is the same network. Convolutions carry a batch norm ``{key}.bn.*`` (its running
statistics measured by :func:`tvm_aie.zoo.weights` on random inputs) unless they have a bias.
"""

from __future__ import annotations

import numpy as np

# input shapes without the batch dimension
SHAPES = {"resnet18": (3, 224, 224), "resnet50": (3, 224, 224), "mobilenet_v2": (3, 224, 224),
          "efficientnet_b0": (3, 224, 224), "vit_tiny": (3, 224, 224),
          "deit_small": (3, 224, 224), "bert_base": (128, 768)}
TRANSFORMERS = ("vit_tiny", "deit_small", "bert_base")
CLASSES = 1000
# MobileNetV2's inverted residuals: expansion, out channels, blocks, first stride
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
# EfficientNet-B0's MBConv stages: expansion, kernel, first stride, out channels, blocks
EFFICIENTNET_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                   (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
# ViT/DeiT: width, heads (12 layers, 16x16 patches, MLP 4x)
VITS = {"vit_tiny": (192, 3), "deit_small": (384, 6)}
BN_EPS, VIT_LN_EPS, BERT_LN_EPS = 1e-5, 1e-6, 1e-12


def output_shape(name: str, batch: int | str = 1) -> tuple:
    return (batch, *SHAPES[name]) if name == "bert_base" else (batch, CLASSES)


def _resnet(o, x, blocks, bottleneck):
    x = o.maxpool(o.conv(x, "stem", 64, 7, 2, act="relu"))
    cin = 64
    for s, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        cout = width * 4 if bottleneck else width
        for b in range(n):
            key, stride = f"l{s}.{b}", 2 if b == 0 and s > 0 else 1
            if bottleneck:
                y = o.conv(o.conv(x, f"{key}.a", width, 1, act="relu"), f"{key}.b", width, 3,
                           stride, act="relu")
                y = o.conv(y, f"{key}.c", cout, 1)
            else:
                y = o.conv(o.conv(x, f"{key}.a", width, 3, stride, act="relu"), f"{key}.b", cout,
                           3)
            skip = o.conv(x, f"{key}.down", cout, 1, stride) if stride > 1 or cin != cout else x
            x, cin = o.act(o.add(y, skip), "relu"), cout
    return o.linear(o.flatten(o.gap(x)), "fc", CLASSES)


def _mobilenet_v2(o, x):
    x, cin = o.conv(x, "stem", 32, 3, 2, act="relu6"), 32
    for i, (t, c, n, s) in enumerate(MOBILENET_V2):
        for j in range(n):
            key, stride, hidden = f"b{i}.{j}", s if j == 0 else 1, cin * t
            y = o.conv(x, f"{key}.expand", hidden, 1, act="relu6") if t > 1 else x
            y = o.conv(y, f"{key}.dw", hidden, 3, stride, groups=hidden, act="relu6")
            y = o.conv(y, f"{key}.project", c, 1)
            x, cin = (o.add(x, y) if stride == 1 and cin == c else y), c
    x = o.conv(x, "head", 1280, 1, act="relu6")
    return o.linear(o.flatten(o.gap(x)), "fc", CLASSES)


def _efficientnet_b0(o, x):
    x, cin = o.conv(x, "stem", 32, 3, 2, act="silu"), 32
    for i, (t, k, s, c, n) in enumerate(EFFICIENTNET_B0):
        for j in range(n):
            key, stride, hidden = f"b{i}.{j}", s if j == 0 else 1, cin * t
            y = o.conv(x, f"{key}.expand", hidden, 1, act="silu") if t > 1 else x
            y = o.conv(y, f"{key}.dw", hidden, k, stride, groups=hidden, act="silu")
            se = o.conv(o.gap(y), f"{key}.se0", max(1, cin // 4), 1, act="silu", bn=False)
            y = o.mul(y, o.conv(se, f"{key}.se1", hidden, 1, act="sigmoid", bn=False))
            y = o.conv(y, f"{key}.project", c, 1)
            x, cin = (o.add(x, y) if stride == 1 and cin == c else y), c
    x = o.conv(x, "head", 1280, 1, act="silu")
    return o.linear(o.flatten(o.gap(x)), "fc", CLASSES)


def _attention(o, x, key, dim, heads):
    q, k, v = (o.linear(x, f"{key}.{p}", dim) for p in "qkv")
    return o.linear(o.attend(q, k, v, heads, dim), f"{key}.o", dim)


def _mlp(o, x, key, dim, hidden):
    return o.linear(o.act(o.linear(x, f"{key}.ff0", hidden), "gelu"), f"{key}.ff1", dim)


def _vit(o, x, dim, heads):
    x = o.prepend(o.tokens(o.conv(x, "patch", dim, 16, 16, bn=False)), "cls")
    x = o.add_param(x, "pos", (224 // 16) ** 2 + 1)
    for i in range(12):
        x = o.add(x, _attention(o, o.layernorm(x, f"{i}.ln0", VIT_LN_EPS), str(i), dim, heads))
        x = o.add(x, _mlp(o, o.layernorm(x, f"{i}.ln1", VIT_LN_EPS), str(i), dim, 4 * dim))
    return o.linear(o.first_token(o.layernorm(x, "ln", VIT_LN_EPS)), "head", CLASSES)


def _bert(o, x, dim=768, heads=12, layers=12):
    for i in range(layers):
        x = o.layernorm(o.add(x, _attention(o, x, str(i), dim, heads)), f"{i}.ln0", BERT_LN_EPS)
        x = o.layernorm(o.add(x, _mlp(o, x, str(i), dim, 4 * dim)), f"{i}.ln1", BERT_LN_EPS)
    return x


def forward(o, x, name: str):
    """Network ``name`` on input ``x`` in the operations of backend ``o``."""
    if name.startswith("resnet"):
        return _resnet(o, x, (2, 2, 2, 2) if name == "resnet18" else (3, 4, 6, 3),
                       name == "resnet50")
    if name in VITS:
        return _vit(o, x, *VITS[name])
    return {"mobilenet_v2": _mobilenet_v2, "efficientnet_b0": _efficientnet_b0,
            "bert_base": _bert}[name](o, x)


def padding(kernel: int) -> int:
    """Same padding for odd kernels; none for the patch embedding's 16x16."""
    return kernel // 2 if kernel % 2 else 0


def batchnorms(w: dict) -> list[str]:
    """The convolutions of ``w`` with a batch norm."""
    return [k[:-len(".bn.var")] for k in w if k.endswith(".bn.var")]


class Shapes:
    """The weights backend: a tensor is its channel (or feature) count; each layer draws its
    seeded weights, He-scaled, batch norms with unit running statistics until measured."""

    def __init__(self, name: str):
        self.rng, self.w = np.random.default_rng(sum(map(ord, name))), {}

    def _normal(self, shape, std):
        return self.rng.standard_normal(shape, np.float32) * np.float32(std)

    def conv(self, x, key, cout, kernel, stride=1, groups=1, act=None, bn=True):
        fan_in = x // groups * kernel * kernel
        self.w[f"{key}.w"] = self._normal((cout, x // groups, kernel, kernel),
                                          np.sqrt(2 / fan_in))
        if bn:
            self.w[f"{key}.bn.scale"] = 1 + self._normal(cout, 0.1)
            self.w[f"{key}.bn.shift"] = self._normal(cout, 0.1)
            self.w[f"{key}.bn.mean"] = np.zeros(cout, np.float32)
            self.w[f"{key}.bn.var"] = np.ones(cout, np.float32)
        else:
            self.w[f"{key}.b"] = self._normal(cout, 0.1)
        return cout

    def linear(self, x, key, n):
        self.w[f"{key}.w"], self.w[f"{key}.b"] = self._normal((x, n), np.sqrt(2 / x)), \
            self._normal(n, 0.1)
        return n

    def layernorm(self, x, key, eps):
        self.w[f"{key}.scale"], self.w[f"{key}.shift"] = 1 + self._normal(x, 0.1), \
            self._normal(x, 0.1)
        return x

    def prepend(self, x, key):
        self.w[key] = self._normal((1, 1, x), 0.1)
        return x

    def add_param(self, x, key, tokens):
        self.w[key] = self._normal((1, tokens, x), 0.1)
        return x

    def attend(self, q, k, v, heads, dim):
        return q

    def act(self, x, kind):
        return x

    add = mul = lambda self, x, y: x
    maxpool = gap = flatten = tokens = first_token = lambda self, x: x


def weights(name: str) -> dict[str, np.ndarray]:
    """Network ``name``'s seeded weights, batch norms with unit running statistics."""
    o = Shapes(name)
    forward(o, SHAPES[name][-1 if name == "bert_base" else 0], name)
    return o.w


class Onnx:
    """The ONNX backend: a tensor is a value name in graph builder ``g``. ``calibrate`` writes each
    batch norm with its batch's statistics, recording their names in ``stats``."""

    def __init__(self, g, w: dict, calibrate: bool = False):
        self.g, self.w, self.calibrate, self.stats, self._consts = g, w, calibrate, {}, {}

    def const(self, name, value):
        if name not in self._consts:
            self._consts[name] = self.g.const(name, value)
        return self._consts[name]

    def conv(self, x, key, cout, kernel, stride=1, groups=1, act=None, bn=True):
        weight = self.w[f"{key}.w"]
        bias = [self.const(f"{key}.b", self.w[f"{key}.b"])] if f"{key}.b" in self.w else []
        k = weight.shape[-1]
        y = self.g.op("Conv", [x, self.const(f"{key}.w", weight), *bias], kernel_shape=[k, k],
                      strides=[stride] * 2, pads=[padding(k)] * 4, group=groups)
        if f"{key}.bn.var" in self.w:
            y = self._batchnorm(y, f"{key}.bn")
        return self.act(y, act)

    def _batchnorm(self, x, key):
        params = [self.const(f"{key}.{p}", self.w[f"{key}.{p}"])
                  for p in ("scale", "shift", *(() if self.calibrate else ("mean", "var")))]
        if not self.calibrate:
            return self.g.op("BatchNormalization", [x, *params], epsilon=BN_EPS)
        mean = self.g.op("ReduceMean", [x], axes=[0, 2, 3])
        d = self.g.op("Sub", [x, mean])
        var = self.g.op("ReduceMean", [self.g.op("Mul", [d, d])], axes=[0, 2, 3])
        self.stats[key] = (mean, var)
        shape = self.const("channels", np.array([-1, 1, 1], np.int64))
        scale, shift = (self.g.op("Reshape", [p, shape]) for p in params[:2])
        std = self.g.op("Sqrt", [self.g.op("Add", [var, self.const("bn_eps",
                                                                   np.float32(BN_EPS))])])
        return self.g.op("Add", [self.g.op("Mul", [self.g.op("Div", [d, std]), scale]), shift])

    def act(self, x, kind):
        if kind == "relu6":
            return self.g.op("Clip", [x, self.const("zero", np.float32(0)),
                                      self.const("six", np.float32(6))])
        if kind == "silu":
            return self.g.op("Mul", [x, self.g.op("Sigmoid", [x])])
        ops = {"relu": "Relu", "sigmoid": "Sigmoid", "gelu": "Gelu"}
        return self.g.op(ops[kind], [x]) if kind else x

    def add(self, x, y):
        return self.g.op("Add", [x, y])

    def mul(self, x, y):
        return self.g.op("Mul", [x, y])

    def maxpool(self, x):
        return self.g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)

    def gap(self, x):
        return self.g.op("GlobalAveragePool", [x])

    def flatten(self, x):
        return self.g.op("Flatten", [x], axis=1)

    def linear(self, x, key, n):
        return self.g.dense(x, self.w[f"{key}.w"], self.w[f"{key}.b"], key)

    def layernorm(self, x, key, eps):
        return self.g.op("LayerNormalization", [x, self.const(f"{key}.scale",
                                                              self.w[f"{key}.scale"]),
                                                self.const(f"{key}.shift", self.w[f"{key}.shift"])],
                         axis=-1, epsilon=eps)

    def attend(self, q, k, v, heads, dim):
        split = self.const("split_heads", np.array([0, 0, heads, dim // heads], np.int64))
        q, k, v = (self.g.op("Transpose", [self.g.op("Reshape", [t, split])], perm=perm)
                   for t, perm in ((q, [0, 2, 1, 3]), (k, [0, 2, 3, 1]), (v, [0, 2, 1, 3])))
        scale = self.const("inv_sqrt_hd", np.float32(1 / np.sqrt(dim // heads)))
        scores = self.g.op("Mul", [self.g.op("MatMul", [q, k]), scale])
        ctx = self.g.op("MatMul", [self.g.op("Softmax", [scores], axis=-1), v])
        merge = self.const("merge_heads", np.array([0, 0, dim], np.int64))
        return self.g.op("Reshape", [self.g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])

    def tokens(self, x):
        flat = self.g.op("Reshape", [x, self.const("flat_hw", np.array([0, 0, -1], np.int64))])
        return self.g.op("Transpose", [flat], perm=[0, 2, 1])

    def prepend(self, x, key):
        """The class token ``key`` before the tokens of every image in the batch."""
        token = self.w[key]
        size = self.const("token_shape", np.array(token.shape[1:], np.int64))
        shape = self.g.op("Concat", [self.g.op("Shape", [x], end=1), size], axis=0)
        return self.g.op("Concat", [self.g.op("Expand", [self.const(key, token), shape]), x],
                         axis=1)

    def add_param(self, x, key, tokens):
        return self.g.op("Add", [x, self.const(key, self.w[key])])

    def first_token(self, x):
        return self.g.op("Gather", [x, self.const("first", np.int64(0))], axis=1)
