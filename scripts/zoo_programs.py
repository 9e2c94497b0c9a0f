"""Digests of the AIE programs ``tvm_aie.build`` makes for every zoo model and precision.

``python scripts/zoo_programs.py`` prints them as JSON; ``--write tests/data/zoo_programs.json``
records them, so ``tests/test_zoo_programs.py`` can check that ``build``, the ``aie`` pipeline and
the CLI still make the same programs after a change meant to move code, not to change it. A change
that means to alter programs rewrites the file and says so in its commit.
"""

from __future__ import annotations

import argparse
import json
import sys

import tvm_aie
from tvm_aie import zoo
from tvm_aie.report import programs

PRECISIONS = ("fp32", "int8", "int16", "bf16")
ZOO = ("jet_mlp", "autoencoder", "lenet", "mobilenet_block", "transformer", "squeezenet_fire")
CASES = [(n, p) for n in ZOO for p in PRECISIONS] + [("mlp_1024", "int8"), ("mlp_sin", "fp32")]


def zoo_module(name: str, precision: str):
    """The Relax module of a zoo model in ``precision`` (bf16: the fp32 model)."""
    quant = precision if precision in zoo.QUANTS else None
    return tvm_aie.load_onnx(zoo.onnx_model(name, quant=quant))


def digests(ex) -> list:
    """Each program's digest, in the order the executable runs them."""
    return [program.digest() for _, program in programs(ex)[1]]


def build_digests(name: str, precision: str, device: str = "aie") -> list:
    return digests(tvm_aie.build(zoo_module(name, precision), target=device,
                                 precision="bf16" if precision == "bf16" else None))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", help="write the digests to this JSON file")
    args = ap.parse_args(argv)
    table = {f"{n}/{p}": build_digests(n, p) for n, p in CASES}
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
