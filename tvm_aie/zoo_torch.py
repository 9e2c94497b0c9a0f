"""The bundled models as PyTorch modules, with the weights of :mod:`tvm_aie.zoo`'s ONNX graphs.

Each module computes what the fp32 ONNX model of the same name computes (batch-norm in inference
form), so the PyTorch path (``torch.export`` -> TVM's ``from_exported_program``) and the ONNX path
can be compared output for output. Importing this module needs PyTorch; ``tvm_aie`` itself does not.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import zoo, zoo_nets


def _linear(w: dict, weight: str, bias: str) -> nn.Linear:
    """``nn.Linear`` from a zoo dense layer (zoo stores [in, out], PyTorch [out, in])."""
    k, n = w[weight].shape
    layer = nn.Linear(k, n)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(w[weight].T))
    layer.bias.data = torch.from_numpy(w[bias])
    return layer


def _conv(w: dict, i: int, groups: int = 1, padding: int = 0) -> nn.Conv2d:
    weight = torch.from_numpy(w[f"c{i}.w"])
    out_ch, _, k, _ = weight.shape
    conv = nn.Conv2d(weight.shape[1] * groups, out_ch, k, padding=padding, groups=groups,
                     bias=f"c{i}.b" in w)
    conv.weight.data = weight
    if conv.bias is not None:
        conv.bias.data = torch.from_numpy(w[f"c{i}.b"])
    return conv


class Mlp(nn.Module):
    """Dense layers with ReLU between them, or with one other op after the first layer."""

    def __init__(self, name: str):
        super().__init__()
        w = zoo.weights(name)
        self.middle = zoo.MLPS[name][1]
        self.layers = nn.ModuleList(_linear(w, f"w{i}", f"b{i}")
                                    for i in range(len([k for k in w if k.startswith("w")])))

    def forward(self, x):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == 0 and self.middle == "Sin":
                x = torch.sin(x)
            elif i < last and not self.middle:
                x = F.relu(x)
        return x


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        w = zoo.weights("lenet")
        self.convs = nn.ModuleList(_conv(w, i) for i in (0, 1))
        self.dense = nn.ModuleList(_linear(w, f"w{i}", f"b{i}") for i in (0, 1, 2))

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.dense[0](x))
        return self.dense[2](F.relu(self.dense[1](x)))


class MobileNetBlock(nn.Module):
    """MobileNetV2 inverted residual: expand 1x1, depthwise 3x3, project 1x1, each with batch-norm."""

    def __init__(self):
        super().__init__()
        w = zoo.weights("mobilenet_block")
        self.convs = nn.ModuleList(_conv(w, i, groups, padding)
                                   for i, (groups, padding) in enumerate([(1, 0), (32, 1), (1, 0)]))
        self.norms = nn.ModuleList()
        for i, conv in enumerate(self.convs):
            bn = nn.BatchNorm2d(conv.out_channels, eps=zoo.BN_EPS)
            bn.weight.data, bn.bias.data = (torch.from_numpy(w[f"bn{i}.{p}"])
                                            for p in ("scale", "shift"))
            bn.running_mean.data, bn.running_var.data = (torch.from_numpy(w[f"bn{i}.{p}"])
                                                         for p in ("mean", "var"))
            self.norms.append(bn)

    def forward(self, x):
        y = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.norms)):
            y = bn(conv(y))
            y = F.relu6(y) if i < 2 else y
        return x + y


class TransformerLayer(nn.Module):
    """Post-norm encoder layer, as ``nn.TransformerEncoderLayer(64, 4, 128, activation="gelu")``
    in inference, written out so the attention is plain matmuls and softmax."""

    def __init__(self):
        super().__init__()
        w = zoo.weights("transformer")
        self.proj = nn.ModuleDict({p: _linear(w, f"{p}.w", f"{p}.b") for p in "qkvo"})
        self.ff0, self.ff1 = _linear(w, "ff0.w", "ff0.b"), _linear(w, "ff1.w", "ff1.b")
        self.norms = nn.ModuleList()
        for i in (0, 1):
            ln = nn.LayerNorm(w[f"ln{i}.scale"].size, eps=zoo.LN_EPS)
            ln.weight.data, ln.bias.data = (torch.from_numpy(w[f"ln{i}.{p}"])
                                            for p in ("scale", "shift"))
            self.norms.append(ln)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = (self.proj[p](x).reshape(b, s, zoo.HEADS, d // zoo.HEADS).transpose(1, 2)
                   for p in "qkv")
        att = torch.softmax(q @ k.transpose(-1, -2) * (1 / np.sqrt(d // zoo.HEADS)), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, s, d)
        h = self.norms[0](x + self.proj["o"](ctx))
        return self.norms[1](h + self.ff1(F.gelu(self.ff0(h))))


class SqueezeNetFire(nn.Module):
    """:func:`tvm_aie.zoo`'s ``squeezenet_fire``: stem, two fire modules, 1x1 classifier."""

    def __init__(self):
        super().__init__()
        w = zoo.weights("squeezenet_fire")
        self.convs = nn.ModuleDict()
        for key, (cout, cin, k) in zoo.SQUEEZENET.items():
            conv = nn.Conv2d(cin, cout, k, padding=k // 2)
            conv.weight.data, conv.bias.data = (torch.from_numpy(w[f"{key}.{p}"]) for p in "wb")
            self.convs[key.replace(".", "_")] = conv

    def _conv(self, x, key):
        return F.relu(self.convs[key.replace(".", "_")](x))

    def forward(self, x):
        x = F.max_pool2d(self._conv(x, "stem"), 2)
        for i in (0, 1):
            squeeze = self._conv(x, f"f{i}.s")
            x = torch.cat([self._conv(squeeze, f"f{i}.e1"), self._conv(squeeze, f"f{i}.e3")], 1)
            if i == 0:
                x = F.max_pool2d(x, 2)
        return torch.flatten(self._conv(x, "cls").mean((2, 3), keepdim=True), 1)


class Net(nn.Module):
    """A full-size network of :mod:`tvm_aie.zoo_nets`: its weights as parameters (batch norms'
    running statistics as buffers), its architecture run in :class:`_TorchOps`."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        for key, value in zoo.weights(name).items():
            if key.endswith((".mean", ".var")):
                self.register_buffer(key.replace(".", "_"), torch.from_numpy(value))
            else:
                self.register_parameter(key.replace(".", "_"),
                                        nn.Parameter(torch.from_numpy(value), requires_grad=False))

    def forward(self, x):
        return zoo_nets.forward(_TorchOps(self), x, self.name)


class _TorchOps:
    """:mod:`tvm_aie.zoo_nets`' operations on PyTorch tensors, with ``net``'s weights."""

    def __init__(self, net: Net):
        self.net = net

    def __getitem__(self, key):
        return getattr(self.net, key.replace(".", "_"))

    def conv(self, x, key, cout, kernel, stride=1, groups=1, act=None, bn=True):
        y = F.conv2d(x, self[f"{key}.w"], None if bn else self[f"{key}.b"], stride,
                     zoo_nets.padding(kernel), groups=groups)
        if bn:
            y = F.batch_norm(y, self[f"{key}.bn.mean"], self[f"{key}.bn.var"],
                             self[f"{key}.bn.scale"], self[f"{key}.bn.shift"], False, 0.0,
                             zoo.BN_EPS)
        return self.act(y, act)

    @staticmethod
    def act(x, kind):
        fns = {"relu": F.relu, "relu6": F.relu6, "silu": F.silu, "sigmoid": torch.sigmoid,
               "gelu": F.gelu}
        return fns[kind](x) if kind else x

    def linear(self, x, key, n):
        return x @ self[f"{key}.w"] + self[f"{key}.b"]

    def layernorm(self, x, key, eps):
        return F.layer_norm(x, x.shape[-1:], self[f"{key}.scale"], self[f"{key}.shift"], eps)

    @staticmethod
    def attend(q, k, v, heads, dim):
        b, s, _ = q.shape
        q, k, v = (t.reshape(b, s, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) * (1 / np.sqrt(dim // heads)), dim=-1)
        return (att @ v).transpose(1, 2).reshape(b, s, dim)

    def prepend(self, x, key):
        return torch.cat([self[key].expand(x.shape[0], -1, -1), x], 1)

    def add_param(self, x, key, tokens):
        return x + self[key]

    add = staticmethod(torch.add)
    mul = staticmethod(torch.mul)
    gap = staticmethod(lambda x: x.mean((2, 3), keepdim=True))
    flatten = staticmethod(lambda x: torch.flatten(x, 1))
    maxpool = staticmethod(lambda x: F.max_pool2d(x, 3, 2, 1))
    tokens = staticmethod(lambda x: x.flatten(2).transpose(1, 2))
    first_token = staticmethod(lambda x: x[:, 0])


def torch_model(name: str) -> nn.Module:
    """Zoo model ``name`` as a PyTorch module in inference mode."""
    if name not in zoo.names(large=True):
        raise KeyError(f"unknown model {name!r}; bundled: {', '.join(zoo.names(large=True))}")
    if name in zoo.LARGE:
        return Net(name).eval()
    cls = {"lenet": LeNet, "mobilenet_block": MobileNetBlock, "transformer": TransformerLayer,
           "squeezenet_fire": SqueezeNetFire}
    return (cls[name]() if name in cls else Mlp(name)).eval()
