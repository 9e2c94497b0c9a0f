"""Hypothesis runs derandomized by default, so the suite draws the same examples on every run
and CI is deterministic; ``HYPOTHESIS_PROFILE=explore`` draws fresh random examples instead."""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
