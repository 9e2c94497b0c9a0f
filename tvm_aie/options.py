"""What one compile for the array depends on: :class:`CompileOptions`.

``build``, the ``aie`` pipeline and the CLI make one of these and hand it on explicitly: to the
partitioner (its device), to ``relax.ext.aie`` as JSON (as TVM's ``RunCodegen(target_options=...)``
hands a BYOC codegen its options) and from there to planning and lowering. Nothing else decides a
compile: there is no module-level or context state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .schedules.bmm import BmmConfig
from .schedules.conv2d import ConvConfig
from .schedules.dense import DenseConfig
from .schedules.rowwise import RowConfig
from .target import get_device

IO = ("ddr", "pl")
PRECISIONS = ("fp32", "bf16")
# pinned configs travel as (layer index, family, knobs) with the family naming the class
_CONFIGS = {"dense": DenseConfig, "conv": ConvConfig, "bmm": BmmConfig, "row": RowConfig}


class OptionsError(ValueError):
    """An option the compiler cannot take (one line naming it and what it may be)."""


def check_precision(precision: str) -> None:
    """:class:`OptionsError` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise OptionsError(f"precision must be 'fp32' or 'bf16', not {precision!r}")


@dataclass(frozen=True)
class CompileOptions:
    """The options of one compile for an AIE device.

    ``device``: a catalog name (``ve2802``). ``io``: how dense chains' inputs and outputs reach
    the array, ``"ddr"`` (shim DMA over the NoC) or ``"pl"`` (the programmable logic's stream
    ports). ``precision``: the datapath of the model's fp32 layers, ``"fp32"`` or ``"bf16"``.
    ``tuning_db``: a ``tvm-aie tune`` database whose best configs replace the default plan.
    ``configs``: ``(layer index, config)`` pairs pinned in every offloaded function before the
    database's (experiments and tests that fix a layer's knobs).
    """

    device: str = field(default_factory=lambda: get_device().name)
    io: str = "ddr"
    precision: str = "fp32"
    tuning_db: str | None = None
    configs: tuple = ()

    def __post_init__(self):
        dev = get_device(self.device)  # an unknown device fails here, listing the known ones
        object.__setattr__(self, "device", dev.name)
        if self.io not in IO:
            raise OptionsError(f"io must be one of {IO}, not {self.io!r}")
        if self.io == "pl" and dev.pl_interface is None:
            raise OptionsError(f"{dev.name} has no PL interface to stream io='pl' through")
        check_precision(self.precision)
        if self.tuning_db is not None:
            object.__setattr__(self, "tuning_db", str(self.tuning_db))
        if isinstance(self.configs, dict):
            object.__setattr__(self, "configs", tuple(sorted(self.configs.items())))
        for index, cfg in self.configs:
            if not isinstance(index, int) or type(cfg) not in _CONFIGS.values():
                raise OptionsError(f"configs pins a layer index to a config, not {index!r}: "
                                   f"{cfg!r}")

    @property
    def pinned(self) -> dict:
        """``{layer index: config}`` pinned in every function."""
        return dict(self.configs)

    def to_json(self) -> str:
        d = asdict(self)
        families = {cls: name for name, cls in _CONFIGS.items()}
        d["configs"] = [[i, families[type(cfg)], cfg.to_dict()] for i, cfg in self.configs]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompileOptions:
        d = json.loads(text)
        d["configs"] = tuple((i, _CONFIGS[family].from_dict(knobs))
                             for i, family, knobs in d.get("configs", ()))
        return cls(**d)
