"""Simulate one AIE program with a trace and write the Perfetto/Chrome trace JSON and the array
picture (PNG). Example: ``python scripts/sim_view.py --dense 256 512 512 --grid 8 4 --trace
run.json --png array.png``; ``--help`` for the rest."""

import sys

from tvm_aie.sim.view import main

if __name__ == "__main__":
    sys.exit(main())
