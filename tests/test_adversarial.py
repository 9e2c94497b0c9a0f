"""The adversarial corpus of issue #15: tampered files, hangs, failed writes and bad input.

Each case is one numbered defect of the issue: a saved executable must never run code of the
file's choosing (1), the simulator bounds work and not only time (2), a failed write leaves the old
file whole (3), a layer that cannot fit falls back (4), bad input is one line naming the problem
and, from the CLI, rc 2 with nothing written (5-7), tuning and saved files survive kills, resumes
and other hosts (8). The Hypothesis fuzzers over program JSON and tuning records are in
``tests/test_fuzz.py``.
"""

import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

import tvm_aie
from tvm_aie import zoo
from tvm_aie.cli import main
from tvm_aie.codegen.program import Core, Instr, Lock, LockOp, Program, TileSpec
from tvm_aie.executable import FORMAT, UnsafeExecutableError
from tvm_aie.sim import NoProgressError, simulate

T0 = (0, 3)


@pytest.fixture
def cli(capsys):
    """``cli(argv) -> (rc, stderr)`` of ``tvm-aie`` run in this process."""
    def run(argv):
        capsys.readouterr()
        rc = main(argv)
        return rc, capsys.readouterr().err

    return run


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The int8 jet MLP built and saved once: (executable, path)."""
    ex = tvm_aie.build(tvm_aie.load_onnx(zoo.onnx_model("jet_mlp", quant="int8")), target="aie")
    path = tmp_path_factory.mktemp("ex") / "jet.npz"
    tvm_aie.save(ex, str(path))
    return ex, path


def _write_executable(path, module, header=None):
    header = header or {"format": FORMAT, "target": str(tvm.target.Target("aie"))}
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
             module=np.frombuffer(tvm.ir.save_json(module).encode(), np.uint8))


def _manifest():
    return R.const(np.frombuffer(b'{"device":"ve2802","model_macs":0,"programs":[]}', np.uint8))


def _tir_exploit(marker):
    @I.ir_module
    class Mod:  # pylint: disable=too-few-public-methods
        @T.prim_func
        def evil(x: T.Buffer((1,), "float32"), y: T.Buffer((1,), "float32")):
            T.evaluate(T.call_extern("int32", "system", f"touch {marker}"))
            y[0] = x[0]

        @R.function
        def main(x: R.Tensor((1,), "float32")):
            cls = Mod
            return R.call_tir(cls.evil, (x,), out_ty=R.Tensor((1,), "float32"))

        @R.function
        def aie_programs():
            return (_manifest(),)

    return Mod


def _packed_exploit():
    @I.ir_module
    class Mod:  # pylint: disable=too-few-public-methods
        @R.function
        def main(x: R.Tensor((1,), "float32")):
            return R.call_dps_packed("runtime.evil", (x,), out_ty=R.Tensor((1,), "float32"))

        @R.function
        def aie_programs():
            return (_manifest(),)

    return Mod


# ---- 1. loading a saved executable never runs code the file chose ----

def test_tir_call_extern_exploit_is_refused_and_runs_nothing(tmp_path, cli):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.npz"
    _write_executable(path, _tir_exploit(marker))
    with pytest.raises(UnsafeExecutableError, match="evil is a PrimFunc"):
        tvm_aie.load(str(path))
    for command in (["run", str(path)], ["report", str(path)]):
        rc, err = cli(command)
        assert rc == 2 and err.count("\n") == 1 and "refused" in err
    assert not marker.exists()


def test_packed_call_other_than_aie_run_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    _write_executable(path, _packed_exploit())
    with pytest.raises(UnsafeExecutableError, match="extern function 'runtime.evil'"):
        tvm_aie.load(str(path))


def test_module_without_manifest_is_refused_not_attribute_error(tmp_path, cli):
    mod = _packed_exploit()
    mod = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint == "main"})
    path = tmp_path / "nomanifest.npz"
    _write_executable(path, mod)
    rc, err = cli(["report", str(path)])
    assert rc == 2 and "no function 'aie_programs'" in err and err.count("\n") == 1


def test_zoo_executable_still_loads_and_runs(saved):
    ex, path = saved
    x = zoo.sample_input("jet_mlp")
    run = lambda e: tvm.relax.VirtualMachine(e, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(run(tvm_aie.load(str(path))), run(ex))


# ---- 8. a saved executable runs on any host of the same kind ----

def test_executable_saved_on_another_host_loads_here(saved, tmp_path):
    ex, path = saved
    with np.load(path) as z:
        header, module = json.loads(z["header"].tobytes()), z["module"]
    target = json.loads(header["target"])
    header["target"] = json.dumps({**target, "mtriple": "aarch64-unknown-linux-gnu"})
    other = tmp_path / "arm.npz"
    np.savez(other, header=np.frombuffer(json.dumps(header).encode(), np.uint8), module=module)
    x = zoo.sample_input("jet_mlp")
    run = lambda e: tvm.relax.VirtualMachine(e, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(run(tvm_aie.load(str(other))), run(ex))


# ---- 2. the simulator bounds work, not only time; locks stay in range ----

def _one_core(body, init=1):
    return Program(name="t", device="ve2802", tiles=[TileSpec(*T0, "compute")],
                   locks=[Lock("l", list(T0), 0, init)], cores=[Core(list(T0), body)])


def test_core_looping_on_a_free_lock_is_an_error_not_a_hang():
    body = [Instr(op="loop", count=10**12, body=[Instr(op="acquire", lock=LockOp("l", 1)),
                                                   Instr(op="release", lock=LockOp("l", 1))])]
    with pytest.raises(NoProgressError, match="looping: core 0,3"):
        simulate(_one_core(body), mode="timing")


@pytest.mark.parametrize("op,value", [("acquire", -1), ("release", -2), ("acquire", 64),
                                      ("release", 99)])
def test_lock_values_outside_the_hardware_range_are_errors(op, value):
    with pytest.raises(ValueError, match=r"outside the lock's range 0\.\.63"):
        simulate(_one_core([Instr(op=op, lock=LockOp("l", value))]), mode="timing")


# ---- 3. a failed write leaves the previous file whole ----

def test_failed_save_keeps_the_previous_executable(saved):
    ex, path = saved
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        with pytest.raises(OSError):
            tvm_aie.save(ex, str(path))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    tvm_aie.load(str(path))


# ---- 4. a dense layer the array cannot hold falls back to the CPU with its reason ----

def test_dense_layer_too_large_for_the_array_falls_back_to_the_cpu(caplog):
    import onnx  # pylint: disable=import-outside-toplevel
    from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel

    k = n = 4096  # fp32: no configuration of the ve2802 holds it (int8: 8192)
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) / 64
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    with caplog.at_level("INFO", logger="tvm_aie"):
        ex = tvm_aie.build(tvm_aie.load_onnx(model), target="aie")
    assert "stays on the CPU: does not fit the array" in caplog.text
    assert tvm_aie.report(ex).subgraphs == []
    x = np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)
    y = tvm.relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(y, x @ w, rtol=1e-4, atol=1e-4)


# ---- 8. tuning: workers end with their parent; a resume adds no duplicate design ----

def _children(pid: int) -> set:
    """Live descendants of ``pid`` (zombies count as dead), from /proc."""
    parents = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_tune_leaves_no_worker_or_tracker(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm_aie.cli", "tune", "zoo:mlp_1024:int8", "--trials", "400",
         "--workers", "2", "--work-dir", str(tmp_path), "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:  # 2 + the tracker
            time.sleep(0.2)
        kids = _children(proc.pid)
        assert len(kids) >= 3, "the tuner did not start its pool"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while any(map(_alive, kids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [k for k in kids if _alive(k)]


def test_resumed_tune_adds_no_duplicate_design(tmp_path, cli):
    argv = ["tune", "zoo:jet_mlp", "--trials", "8", "--workers", "1", "--work-dir", str(tmp_path),
            "-q"]
    assert cli(argv)[0] == 0
    first = (tmp_path / "database.jsonl").read_text().splitlines()
    assert cli(argv)[0] == 0
    again = (tmp_path / "database.jsonl").read_text().splitlines()
    assert again == first
    assert sum('"kind":"design"' in line for line in again) == 1


# ---- 5, 6, 7. bad input: one line naming the problem, rc 2, nothing written ----

def _onnx(tmp_path, name, nodes, inputs, outputs, inits=(), opset=17):
    from onnx import helper  # pylint: disable=import-outside-toplevel

    import onnx  # pylint: disable=import-outside-toplevel

    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, name, inputs, outputs, list(inits)),
                                opset_imports=[helper.make_opsetid("", opset)]), path)
    return str(path)


def _value(name, elem, shape):
    from onnx import helper  # pylint: disable=import-outside-toplevel

    return helper.make_tensor_value_info(name, elem, shape)


@pytest.fixture
def models(tmp_path):
    """The bad models and inputs of the corpus, by name -> path."""
    from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel

    f = TensorProto.FLOAT
    int4 = helper.make_tensor("w", TensorProto.INT4, [4, 4], [0] * 16)
    paths = {
        "int4": _onnx(tmp_path, "int4", [helper.make_node("Cast", ["w"], ["wf"], to=f),
                                         helper.make_node("MatMul", ["x", "wf"], ["y"])],
                      [_value("x", f, [1, 4])], [_value("y", f, [1, 4])], [int4], opset=21),
        "dyn": _onnx(tmp_path, "dyn", [helper.make_node("MatMul", ["x", "w"], ["y"])],
                     [_value("x", f, ["n", 16])], [_value("y", f, ["n", 8])],
                     [numpy_helper.from_array(np.ones((16, 8), np.float32), "w")]),
        "two": _onnx(tmp_path, "two", [helper.make_node("Add", ["a", "b"], ["y"])],
                     [_value("a", f, [2, 4]), _value("b", f, [2, 4])], [_value("y", f, [2, 4])]),
    }
    for name, array in (("wrong.npy", np.zeros((3, 5), np.float32)),
                        ("strings.npy", np.array(["abcdef"]))):
        np.save(tmp_path / name, array)
        paths[name] = str(tmp_path / name)
    np.savez(tmp_path / "strings.npz", x=np.array(["abcdef"]))
    paths["strings.npz"] = str(tmp_path / "strings.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    paths["empty.npz"] = str(tmp_path / "empty.npz")
    header = np.frombuffer(b'["not", "a", "dict"]', np.uint8)
    np.savez(tmp_path / "list.npz", header=header, module=header)
    paths["list.npz"] = str(tmp_path / "list.npz")
    (tmp_path / "empty.jsonl").write_text("")
    paths["empty.jsonl"] = str(tmp_path / "empty.jsonl")
    good = '{"kind":"measure","task":"ve2802/dense/1x16x64/float32","cycles":5,"tiles":1,'
    (tmp_path / "abc.jsonl").write_text(good + '"config":"abc"}\n')
    paths["abc.jsonl"] = str(tmp_path / "abc.jsonl")
    (tmp_path / "noslash.jsonl").write_text(good.replace("ve2802/dense/1x16x64/float32", "x")
                                            + '"config":{}}\n')
    paths["noslash.jsonl"] = str(tmp_path / "noslash.jsonl")
    return paths


@pytest.mark.parametrize("argv, message", [
    (["compile", "{int4}"], "TVM's ONNX importer cannot import it"),
    (["run", "zoo:jet_mlp", "--input", "{wrong.npy}"],
     "input x must be (1, 16) float32, got (3, 5) float32"),
    (["run", "{dyn}"], "input x has the symbolic shape [n,16], so no random input can be made"),
    (["run", "{empty.npz}"], "not a tvm-aie executable"),
    (["report", "{list.npz}"], "format 'list', expected tvm-aie-executable/1"),
    (["report", "{abc.jsonl}"], "no line is a tuning record"),
    (["tune", "zoo:jet_mlp", "--work-dir", "{abc.jsonl}", "--trials", "4"],
     "no line is a tuning record"),
    (["compile", "zoo:jet_mlp", "--tuning-db", "{abc.jsonl}"], "no line is a tuning record"),
    (["report", "{noslash.jsonl}"], "no line is a tuning record"),
    (["compile", "zoo:lenet", "--batch", "0"], "--batch: '0' is not a whole number >= 1"),
    (["run", "zoo:lenet", "--batch", "-2"], "--batch: '-2' is not a whole number >= 1"),
    (["tune", "zoo:jet_mlp", "--batch-size", "-3"], "--batch-size: '-3' is not a whole number"),
    (["run", "zoo:jet_mlp", "--input", "{strings.npz}"], "got (1,) <U6"),
    (["run", "zoo:jet_mlp", "--input", "{strings.npy}"], "got (1,) <U6"),
    (["run", "{two}", "--input", "{wrong.npy}"], "the model has 2 inputs (a, b): give them with "
                                                 "--input x.npz"),
    (["tune", "zoo:jet_mlp", "--trials", "0"], "--trials: '0' is not a whole number >= 1"),
    (["tune", "zoo:jet_mlp", "--trials", "-5"], "--trials: '-5' is not a whole number >= 1"),
    (["tune", "zoo:jet_mlp", "--batch-size", "0"], "--batch-size: '0' is not a whole number"),
    (["compile", "zoo:jet_mlp", "--tuning-db", "{missing}"], "no tuning database at"),
    (["report", "{missing}"], "no tuning database at"),
    (["report", "{empty.jsonl}"], "holds no tuning records"),
])
def test_bad_input_is_one_line_rc_2_nothing_written(argv, message, models, tmp_path, capsys):
    paths = {**models, "missing": str(tmp_path / "missing.jsonl")}
    for key, path in paths.items():
        argv = [a.replace("{" + key + "}", path) for a in argv]
    out = tmp_path / "out.npz"
    if argv[0] == "compile":
        argv += ["-o", str(out)]
    if argv[0] == "tune" and "--work-dir" not in argv:  # where a run would write
        argv += ["--work-dir", str(tmp_path / "work")]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_several_inputs_without_input_run_on_random_ones(models, cli):
    assert cli(["run", models["two"]])[0] == 0


def test_build_with_a_missing_tuning_db_is_an_error(tmp_path):
    from tvm_aie.tune.database import DatabaseFormatError  # pylint: disable=import-outside-toplevel

    mod = tvm_aie.load_onnx(zoo.onnx_model("jet_mlp"))
    with pytest.raises(DatabaseFormatError, match="no tuning database at"):
        tvm_aie.build(mod, target="aie", tuning_db=tmp_path / "missing.jsonl")


def test_data_dependent_shape_model_runs_on_the_cpu(tmp_path):
    from onnx import TensorProto, helper  # pylint: disable=import-outside-toplevel

    f = TensorProto.FLOAT
    path = _onnx(tmp_path, "nonzero", [helper.make_node("NonZero", ["x"], ["y"])],
                 [_value("x", f, [4, 4])], [_value("y", TensorProto.INT64, [2, None])])
    ex = tvm_aie.build(tvm_aie.load_onnx(path), target="aie")
    tvm_aie.save(ex, str(tmp_path / "nz.npz"))
    x = np.array([[0, 1, 0, 2]] * 4, np.float32)
    vm = tvm.relax.VirtualMachine(tvm_aie.load(str(tmp_path / "nz.npz")), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), np.nonzero(x))
