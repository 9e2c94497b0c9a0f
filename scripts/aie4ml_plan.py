"""Run AIE4ML's planner on one ONNX model; runs in AIE4ML's own venv (``.venv-aie4ml``).

Kept apart from tvm-aie's venv so AIE4ML's pinned dependencies never meet ours; it imports only
``aie4ml``. Prints one JSON line: whether AIE4ML accepted the model (else its one-line reason), the
seconds ``from_onnx`` + ``write`` took (AIE4ML's compile without Vitis), and where the design is.

    .venv-aie4ml/bin/python scripts/aie4ml_plan.py MODEL.onnx OUTPUT_DIR
"""

import json
import sys
import time

CONFIG = {"Part": "xilinx_vek280_base", "AIEConfig": {"Optimize": "throughput", "Iterations": 1}}


def main(model: str, output_dir: str) -> dict:
    import aie4ml  # pylint: disable=import-outside-toplevel

    t0 = time.perf_counter()
    try:
        aie4ml.from_onnx(model, CONFIG, output_dir=output_dir).write()
    except Exception as err:  # pylint: disable=broad-except  # a rejection is a result here
        lines = str(err).strip().splitlines()
        return {"accepted": False, "version": aie4ml.__version__,
                "reason": f"{type(err).__name__}: {lines[0] if lines else ''}"}
    return {"accepted": True, "version": aie4ml.__version__, "seconds": time.perf_counter() - t0,
            "pipeline": f"{output_dir}/aie_pipeline.json"}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])))
