"""ECP5 clocking: the ``EHXPLLL`` dividers for a wanted clock, and the PLL as a component.

:func:`pll_params` searches the dividers the way Lattice's and Trellis' ``ecppll`` do:
``f_out = f_in / CLKI_DIV * CLKFB_DIV`` (feedback from CLKOP), with the phase detector input
``f_in / CLKI_DIV`` in 3.125 .. 400 MHz and the VCO ``f_out * CLKOP_DIV`` in 400 .. 800 MHz
(LFE5U datasheet, sysCLOCK PLL timing).
"""

import dataclasses

from amaranth.hdl import Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PLLParams", "pll_params", "EHXPLLL"]

PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
OUT_MHZ = (3.125, 400.0)
#: a clock within this relative error of the wanted one is accepted (and reported as made)
TOLERANCE = 0.005


@dataclasses.dataclass(frozen=True)
class PLLParams:
    """Dividers of one EHXPLLL (CLKOP output, CLKOP feedback) and the frequencies they make."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in_mhz: float

    @property
    def f_out_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div * self.clkfb_div

    @property
    def f_vco_mhz(self) -> float:
        return self.f_out_mhz * self.clkop_div

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div


def pll_params(f_in_mhz: float, f_out_mhz: float) -> PLLParams:
    """The EHXPLLL dividers making the clock nearest to ``f_out_mhz`` from ``f_in_mhz``.

    Raises
    ------
    ValueError
        ``f_out_mhz`` outside what the PLL can make (3.125 .. 400 MHz), or no divider set
        within 0.5 % of it (the message names the nearest clock the PLL makes).
    """
    if not OUT_MHZ[0] <= f_out_mhz <= OUT_MHZ[1]:
        raise ValueError(f"an ECP5 PLL makes {OUT_MHZ[0]} .. {OUT_MHZ[1]:g} MHz, not "
                         f"{f_out_mhz:g} MHz; choose a clock in that range")
    best = None
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if pfd < PFD_MHZ[0]:
            break
        if pfd > PFD_MHZ[1]:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            if out > OUT_MHZ[1]:
                break
            op = round((VCO_MHZ[0] + VCO_MHZ[1]) / 2 / out)
            if not 1 <= op <= 128 or not VCO_MHZ[0] <= out * op <= VCO_MHZ[1]:
                continue
            err = abs(out - f_out_mhz)
            if best is None or err < best[0] - 1e-9:
                best = (err, PLLParams(clki, fb, op, f_in_mhz))
    if best is None or best[0] > TOLERANCE * f_out_mhz:
        near = f" (nearest: {best[1].f_out_mhz:.4g} MHz)" if best else ""
        step = f_in_mhz / int(f_in_mhz // PFD_MHZ[0])
        raise ValueError(f"an ECP5 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz"
                         f"{near}; choose a clock the PLL makes, e.g. a multiple of "
                         f"{step:g} MHz")
    return best[1]


class EHXPLLL(wiring.Component):
    """One ECP5 PLL: ``clk_out`` from ``clk_in`` with the dividers of ``params``.

    Interface attributes
    --------------------
    clk_in : In(1), clk_out : Out(1), locked : Out(1)
    """

    clk_in: In(1)
    clk_out: Out(1)
    locked: Out(1)

    def __init__(self, params: PLLParams):
        if not isinstance(params, PLLParams):
            raise TypeError(f"params must be a PLLParams (see pll_params), not {params!r}")
        self._params = params
        super().__init__()

    @property
    def params(self) -> PLLParams:
        return self._params

    def elaborate(self, platform):
        m = Module()
        p = self._params
        fb = Signal()
        m.d.comb += [fb.eq(self.clk_out)]
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{p.f_in_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.f_out_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div // 2, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, i_CLKFB=fb,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=self.clk_out, o_LOCK=self.locked,
        )
        return m
