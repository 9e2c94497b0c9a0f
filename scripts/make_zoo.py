"""Write the bundled models as ONNX files: ``<name>.onnx`` (fp32), ``<name>_int8.onnx`` and
``<name>_int16.onnx`` (QDQ: int8 weights, int8 or int16 activations).

The models are generated from code (:mod:`tvm_aie.zoo`), so this is for looking at them with other
tools (Netron, onnxruntime, other compilers); tvm-aie itself never needs the files.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import onnx

from tvm_aie import zoo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=pathlib.Path, help="directory to write to (created if missing)")
    ap.add_argument("--model", action="append", choices=zoo.names(large=True),
                    help="only this model (repeatable; default: all but the full-size networks)")
    ap.add_argument("--batch", default="1", help="batch size, or a name (e.g. N) for a symbolic one")
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    args = ap.parse_args(argv)
    batch = int(args.batch) if args.batch.isdigit() else args.batch
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.model or zoo.names():
        for quant in (None, *zoo.QUANTS):
            path = args.out / f"{name}{'_' + quant if quant else ''}.onnx"
            onnx.save(zoo.onnx_model(name, quant, per_channel=not args.per_tensor, batch=batch),
                      path)
            print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
