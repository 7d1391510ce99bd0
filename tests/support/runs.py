"""Whole-sequence checks of a fabric behind a host driver, in both schedules."""

import numpy as np

from neuroloom.firmware.driver import Driver
from neuroloom.sim.transports import GoldenTransport

SCHEDULES = ("pipelined", "fall-through")


def check_both_schedules(drv: Driver, img, x, ref, what: str = "fabric") -> None:
    """``drv`` (image ``img`` loaded) runs ``x``: running logits equal the quantized reference
    ``ref`` and the architectural counters equal the golden model's, in both schedules."""
    gold = Driver(GoldenTransport(batch=1))
    gold.load(img)
    for mode in SCHEDULES:
        res = drv.run(x, mode=mode)
        np.testing.assert_array_equal(res.running, ref, err_msg=f"{mode}: {what} != reference")
        np.testing.assert_array_equal(res.counters, gold.run(x, mode=mode).counters,
                                      err_msg=f"{mode}: counters")
