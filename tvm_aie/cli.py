"""``tvm-aie``: compile, run, tune and report from the shell.

    tvm-aie compile model.onnx --device aie-ml/vek280 [--tuning-db tune/database.jsonl] -o m.npz
    tvm-aie compile zoo:lenet:int16 -o l.npz; tvm-aie compile zoo:lenet --precision bf16
    tvm-aie run m.npz [--input x.npy] [-o y.npy]
    tvm-aie tune model.onnx --device aie-ml/vek280 --trials 500 --work-dir tune/
    tvm-aie report m.npz | tune/
    tvm-aie trace model.onnx --trace trace.json --png array.png

A model is an ONNX file, or ``zoo:NAME[:int8|:int16]`` for a bundled one (fp32, or QDQ with int8
or int16 activations and int8 weights). ``--precision bf16`` runs a model's fp32 layers on the
bf16 datapath (``tvm_aie.build(..., precision="bf16")``); the integer precisions are the QDQ
model's own. Each subcommand is one ``cmd_*`` function and one subparser, so new ones (e.g. a
simulator ``trace``) slot in beside them.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time
import zipfile

import numpy as np

from .atomic import atomic_write
from .sim.engine import SimulationError

DB_NAME = "database.jsonl"


# what --precision takes: the datapath of a model's fp32 layers (build()'s ``precision``)
PRECISIONS = ("fp32", "bf16")


def load_model(spec: str, batch: int = 1):
    """An ONNX path or ``zoo:NAME[:int8|:int16]`` -> Relax module."""
    from .frontend import load_onnx  # pylint: disable=import-outside-toplevel

    if spec.startswith("zoo:"):
        from . import zoo  # pylint: disable=import-outside-toplevel

        name, _, quant = spec[4:].partition(":")
        if quant and quant not in zoo.QUANTS:
            raise ValueError(f"unknown zoo precision {quant!r} in {spec!r}: zoo:{name} (fp32), "
                             + ", ".join(f"zoo:{name}:{q}" for q in zoo.QUANTS))
        try:
            model = zoo.onnx_model(name, quant=quant or None, batch=batch)
        except KeyError as e:  # an unknown name: the zoo's message, as the CLI's one-line error
            raise ValueError(e.args[0]) from None
        return load_onnx(model)
    return load_onnx(spec)


def _precision(value: str) -> str:
    """``--precision``'s type: one of :data:`PRECISIONS`, else argparse's one-line error."""
    if value not in PRECISIONS:
        raise argparse.ArgumentTypeError(
            f"unknown precision {value!r}: {' or '.join(PRECISIONS)} (int8 and int16 are QDQ "
            "models: zoo:NAME:int8, zoo:NAME:int16 or a quantised ONNX file)")
    return value


def _load(args):
    """The model of ``args`` as Relax, its inputs' symbolic dimensions bound by
    ``--input-shapes``."""
    from .shapes import bind_input_shapes, parse_input_shapes  # pylint: disable=C0415

    shapes = parse_input_shapes(args.input_shapes) if args.input_shapes is not None else None
    return bind_input_shapes(load_model(args.model, args.batch), shapes)


def _positive(value: str) -> int:
    """The type of counts (``--batch``, ``--trials``, ...): a whole number >= 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return n


def _compiled(args):
    """A saved executable (``.npz``), or the model built now for ``args.device`` in
    ``args.precision``."""
    import tvm_aie  # pylint: disable=import-outside-toplevel

    if not args.model.endswith(".npz"):
        return tvm_aie.build(_load(args), target=args.device, precision=args.precision)
    for flag, value in (("--precision", args.precision), ("--input-shapes", args.input_shapes)):
        if value:
            raise ValueError(f"{flag} applies when compiling; {args.model} is compiled already")
    return tvm_aie.load(args.model)


def _db_path(path: str) -> pathlib.Path:
    p = pathlib.Path(path)
    return p / DB_NAME if p.is_dir() or not p.suffix else p


def cmd_compile(args) -> int:
    import tvm_aie  # pylint: disable=import-outside-toplevel

    db = _db_path(args.tuning_db) if args.tuning_db else None
    ex = tvm_aie.build(_load(args), target=args.device, tuning_db=db, precision=args.precision)
    tvm_aie.save(ex, args.output)
    print(tvm_aie.report(ex))
    print(f"saved {args.output}")
    return 0


def cmd_run(args) -> int:
    import tvm  # pylint: disable=import-outside-toplevel
    import tvm_aie  # pylint: disable=import-outside-toplevel
    from .shapes import symbolic_inputs  # pylint: disable=import-outside-toplevel

    ex = _compiled(args)
    if args.input is None and (symbolic := symbolic_inputs(ex.aie_lowered)):
        name, shape = symbolic[0]
        raise ValueError(f"input {name} has the symbolic shape {shape}, so no random input can "
                         f"be made: compile with --input-shapes \"{name}:[...]\" or give "
                         "--input x.npy")
    xs = _inputs(ex.aie_lowered["main"].params, args.input)
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](*map(tvm.runtime.tensor, xs)).numpy()
    if args.output:  # np.save's name (.npy added), written atomically
        with atomic_write(args.output if args.output.endswith(".npy") else
                          args.output + ".npy") as f:
            np.save(f, y)
    print(f"output {y.shape} {y.dtype}: {np.array2string(y.ravel()[:8], precision=4)}"
          f"{' ...' if y.size > 8 else ''}")
    print(tvm_aie.report(ex))
    return 0


def _inputs(params, path: str | None) -> list:
    """The arrays ``run`` passes to ``main``: from ``--input`` (a ``.npy`` for a one-input model,
    a ``.npz`` with one array per input name), else seeded random ones; each checked against its
    parameter's shape (``None``: a dynamic dimension) and dtype."""
    from tvm.tirx import IntImm  # pylint: disable=import-outside-toplevel

    names = [p.name for p in params]
    shapes = {p.name: [int(d) if isinstance(d, (int, IntImm)) else None for d in p.ty.shape]
              for p in params}
    dtypes = {p.name: str(p.ty.dtype) for p in params}
    shown = {p.name: "(" + ", ".join(str(d if w is None else w) for w, d in
                                     zip(shapes[p.name], p.ty.shape)) + ")" for p in params}
    if path is None:  # seeded random inputs of static shapes
        rng = np.random.default_rng(0)
        return [rng.standard_normal(shapes[n]).astype(dtypes[n]) for n in names]
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a .npy or .npz of arrays ({e or 'empty file'})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    else:
        arrays = {names[0]: loaded}
    if len(names) != 1 and not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"the model has {len(names)} inputs ({', '.join(names)}): give them "
                         "with --input x.npz, one array per input name")
    if set(arrays) != set(names):
        raise ValueError(f"{path} holds {sorted(arrays)}; the model's inputs are {names}")
    for name in names:
        x, want = arrays[name], shapes[name]
        if len(x.shape) != len(want) or any(w not in (None, s) for w, s in zip(want, x.shape)) \
                or x.dtype != np.dtype(dtypes[name]):
            raise ValueError(f"input {name} must be {shown[name]} {dtypes[name]}, got {x.shape} "
                             f"{x.dtype}; give an array of that shape and dtype with --input")
    return [arrays[n] for n in names]


def cmd_tune(args) -> int:
    """Tune under ``--precision``: a bf16 model's tasks are its bf16 layers, measured as such."""
    # pylint: disable=import-outside-toplevel
    import tvm
    from tqdm import tqdm

    from .target import device_of_target
    from .tune import Database, executor, extract_tasks, tune_model

    device = device_of_target(tvm.target.Target(args.device))
    mod = _load(args)
    precision = args.precision or "fp32"
    tasks = extract_tasks(mod, device, precision)
    db = Database(_db_path(args.work_dir))
    per_task = -(-args.trials // max(1, len(tasks)))
    total = sum(min(per_task, len(t.space().configs)) for t in tasks)
    done = sum(min(per_task, len(db.measurements(t.key))) for t in tasks)
    print(f"{len(tasks)} tasks on {device.name}; {per_task} trials each; database {db.path}"
          + (f" (resuming: {done} done)" if done else ""))
    bar = tqdm(total=total, initial=done, unit="trial", file=sys.stderr,
               disable=args.quiet)

    def on_task(task):
        bar.set_description(str(task))

    def progress(n, cycles):
        bar.update(n)
        bar.set_postfix(best_cycles=cycles)

    t0 = time.perf_counter()
    with executor(args.workers, args.dask) as ex:
        res = tune_model(mod, device, db, args.trials, tuner=args.tuner, seed=args.seed,
                         batch=args.batch_size, goal=args.goal, executor=ex, progress=progress,
                         on_task=on_task, precision=precision)
    bar.close()
    print(task_table(res.tasks))
    print(design_table(res.designs))
    flag = f" --precision {args.precision}" if args.precision else ""
    print(f"tuned in {time.perf_counter() - t0:.1f} s; build with: tvm-aie compile {args.model} "
          f"--device {args.device}{flag} --tuning-db {db.path}")
    if args.plot:
        from .tune.plot import tuning_curves  # pylint: disable=import-outside-toplevel

        tuning_curves({str(r.task): {args.tuner: r.curve} for r in res.tasks}, args.plot)
        print(f"tuning curves: {args.plot}")
    return 0


def task_table(results: list) -> str:
    rows = [f"{'task':<42}{'space':>7}{'rejected':>10}{'trials':>8}{'default':>10}{'best':>10}"
            f"{'speedup':>9}  best config"]
    for r in results:
        default = r.default_cycles
        speed = f"{default / r.best_cycles:.2f}x" if default and r.best_cycles else "-"
        rows.append(f"{str(r.task):<42}{r.space_size:>7}{sum(r.rejected.values()):>10}"
                    f"{r.trials:>8}{default or '-':>10}{r.best_cycles or '-':>10}{speed:>9}  "
                    f"{r.best or '-'}")
    return "\n".join(rows)


def design_table(designs: list) -> str:
    rows = [f"{'chain':<12}{'layers':>7}{'default cyc':>13}{'tuned cyc':>11}  applied"]
    for i, d in enumerate(designs):
        rows.append(f"{'chain' + str(i):<12}{len(d['tasks']):>7}{d['default_cycles']:>13}"
                    f"{d['cycles']:>11}  {'tuned' if d['tuned'] else 'default (tuned not faster)'}")
    return "\n".join(rows)


def cmd_report(args) -> int:
    path = pathlib.Path(args.path)
    if path.suffix == ".npz":
        import tvm_aie  # pylint: disable=import-outside-toplevel

        print(tvm_aie.report(tvm_aie.load(str(path))))
        return 0
    from .tune import Database, pareto_front  # pylint: disable=import-outside-toplevel

    db = Database.existing(_db_path(args.path))
    tasks: dict = {}
    for r in db.records:
        if r["kind"] == "measure":
            tasks.setdefault(r["task"], []).append(r)
    print(f"{'task':<36}{'trials':>8}{'failed':>8}{'best':>10}  best config")
    fronts = []
    for key, recs in tasks.items():
        best = db.best(key)
        failed = sum(r["cycles"] is None for r in recs)
        print(f"{key:<36}{len(recs):>8}{failed:>8}{best[1] if best else '-':>10}  "
              f"{best[0] if best else '-'}")
        front = pareto_front([(r["tiles"], r["cycles"], None) for r in recs if r["cycles"]])
        fronts.append(f"  {key}: " + "  ".join(f"{t}:{c}" for t, c, _ in front))
    print("Pareto fronts (tiles:cycles):\n" + "\n".join(fronts))
    designs = [r for r in db.records if r["kind"] == "design"]
    if designs:
        print(design_table(designs))
    return 0


def _numbered(path: str, i: int) -> pathlib.Path | None:
    """``path`` for the first program, ``stem_i.suffix`` for the others; None if not wanted."""
    if not path:
        return None
    p = pathlib.Path(path)
    return p if i == 0 else p.with_name(f"{p.stem}_{i}{p.suffix}")


def cmd_trace(args) -> int:
    from .report import programs  # pylint: disable=import-outside-toplevel
    from .sim.view import view  # pylint: disable=import-outside-toplevel

    _, progs = programs(_compiled(args))
    if not progs:
        print("nothing of this model runs on the array: no trace")
        return 1
    for i, (name, program) in enumerate(progs):
        trace, png = _numbered(args.trace, i), _numbered(args.png, i)
        rep = view(program, trace, png).report
        written = ", ".join(str(p) for p in (trace, png) if p) or "nothing written"
        print(f"{name}: {rep.tiles_used} cores, {rep.cycles:,} cycles -> {written}")
    return 0


def _model_args(p):
    p.add_argument("model", help="ONNX file or zoo:NAME[:int8|:int16]")
    p.add_argument("--device", default="aie", help="target tag, e.g. aie-ml/vek280")
    p.add_argument("--batch", type=_positive, default=1, help="batch of a zoo model")
    p.add_argument("--precision", type=_precision, metavar="{fp32,bf16}",
                   help="datapath of the model's fp32 layers on the array (default fp32)")
    p.add_argument("--input-shapes", metavar="SHAPES",
                   help='shapes binding symbolic input dimensions, as tvmc spells them: '
                        '"x:[1,3,224,224]" (several separated by commas or spaces)')


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument as one line (no usage block) and rc 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="tvm-aie", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="log what the compiler decides")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compile", help="build a model and save the executable (.npz)")
    _model_args(p)
    p.add_argument("--tuning-db", help="database (or work dir) from tvm-aie tune")
    p.add_argument("-o", "--output", default="model.npz")
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("run", help="run a saved executable or a model on the simulator")
    _model_args(p)
    p.add_argument("--input", help=".npy input (default: seeded random)")
    p.add_argument("-o", "--output", help="save the output as .npy")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("tune", help="tune a model's AIE schedules on the simulator")
    _model_args(p)
    p.add_argument("--trials", type=_positive, default=500,
                   help="measurements in all (split by task)")
    p.add_argument("--work-dir", default="tune", help="holds database.jsonl (resumed if present)")
    p.add_argument("--tuner", choices=("xgb", "random"), default="xgb")
    p.add_argument("--goal", choices=("latency", "throughput"), default="latency")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive, default=16, help="candidates measured per round")
    p.add_argument("--workers", type=_positive,
                   help="measurement processes (default: CPUs; 1: none)")
    p.add_argument("--dask", help="Dask scheduler address, or 'local' for a local cluster")
    p.add_argument("--plot", help="write the tuning curves to this PNG")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser("trace", help="simulate each AIE program of a model once and write its "
                                     "Perfetto trace JSON and array picture")
    _model_args(p)
    p.add_argument("--trace", default="trace.json", help="trace path ('' for none); programs "
                                                         "after the first get _1, _2, ...")
    p.add_argument("--png", default="array.png", help="array picture path ('' for none)")
    p.set_defaults(func=cmd_trace)
    p = sub.add_parser("report", help="report of a saved executable, or of a tuning work dir")
    p.add_argument("path", help=".npz executable, or a tuning work dir / database")
    p.set_defaults(func=cmd_report)
    return ap



def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, OSError, SimulationError) as e:  # the library's errors: one actionable line
        print(f"tvm-aie {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
