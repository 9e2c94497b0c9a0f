"""The ``tvm.backends`` entry point: run by ``import tvm`` so ``Target("aie")`` resolves at once.

Kept to registrations only (target tags, the Relax pipeline, the codegen and runtime functions):
the heavy modules (simulator, schedules) are imported when first used.
"""


def autoload() -> None:
    import tvm_aie  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
