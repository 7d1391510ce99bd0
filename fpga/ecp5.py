"""ECP5 clocking: the ``EHXPLLL`` dividers for a wanted clock, and the PLL as a component; a
domain's reset on the global network (:func:`global_reset`).

:func:`pll_params` searches the dividers the way Lattice's and Trellis' ``ecppll`` do:
``f_out = f_in / CLKI_DIV * CLKFB_DIV`` (feedback from CLKOP), with the phase detector input
``f_in / CLKI_DIV`` in 3.125 .. 400 MHz and the VCO ``f_out * CLKOP_DIV`` in 400 .. 800 MHz
(LFE5U datasheet, sysCLOCK PLL timing). :func:`pll_configs` lists every such divider set (every
VCO frequency in range), for a caller that also wants a second output ``CLKOS = VCO /
CLKOS_DIV`` (:meth:`PLLParams.with_clkos`; the board tops clock their UART from it).
"""

import dataclasses

from amaranth.hdl import Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neuroloom.hw.targets import is_ecp5

__all__ = ["PLLParams", "pll_configs", "pll_params", "EHXPLLL", "global_reset"]

PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
OUT_MHZ = (3.125, 400.0)
#: a clock within this relative error of the wanted one is accepted (and reported as made)
TOLERANCE = 0.005


@dataclasses.dataclass(frozen=True)
class PLLParams:
    """Dividers of one EHXPLLL (CLKOP output, CLKOP feedback; ``clkos_div``: the CLKOS output
    too, None: disabled) and the frequencies they make."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in_mhz: float
    clkos_div: int | None = None

    @property
    def f_out_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div * self.clkfb_div

    @property
    def f_vco_mhz(self) -> float:
        return self.f_out_mhz * self.clkop_div

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div

    @property
    def f_os_mhz(self) -> float | None:
        """The CLKOS clock, None when CLKOS is disabled."""
        return None if self.clkos_div is None else self.f_vco_mhz / self.clkos_div

    def with_clkos(self, clkos_div: int) -> "PLLParams":
        """These dividers with CLKOS enabled at ``VCO / clkos_div``."""
        if not isinstance(clkos_div, int) or not 1 <= clkos_div <= 128:
            raise ValueError(f"clkos_div={clkos_div!r} must be an int in 1..128")
        f = self.f_vco_mhz / clkos_div
        if not OUT_MHZ[0] <= f <= OUT_MHZ[1]:
            raise ValueError(f"CLKOS {f:g} MHz (VCO {self.f_vco_mhz:g} / {clkos_div}) is outside "
                             f"{OUT_MHZ[0]} .. {OUT_MHZ[1]:g} MHz")
        return dataclasses.replace(self, clkos_div=clkos_div)


def _clkop_dividers(f_in_mhz: float):
    """(CLKI_DIV, CLKFB_DIV, CLKOP clock) with the phase detector and the output in range."""
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if pfd < PFD_MHZ[0]:
            break
        if pfd > PFD_MHZ[1]:
            continue
        for fb in range(1, 81):
            if pfd * fb > OUT_MHZ[1]:
                break
            yield clki, fb, pfd * fb


def pll_configs(f_in_mhz: float, f_out_mhz: float) -> list[PLLParams]:
    """Every EHXPLLL divider set whose CLKOP is within 0.5 % of ``f_out_mhz`` (each VCO
    frequency in range once), the nearest clock first, then the VCO nearest mid-range."""
    found = []
    for clki, fb, out in _clkop_dividers(f_in_mhz):
        err = abs(out - f_out_mhz)
        if err > TOLERANCE * f_out_mhz:
            continue
        for op in range(1, 129):
            if VCO_MHZ[0] <= out * op <= VCO_MHZ[1]:
                found.append((round(err, 9), abs(out * op - sum(VCO_MHZ) / 2),
                              PLLParams(clki, fb, op, f_in_mhz)))
    found.sort(key=lambda t: t[:2])                 # stable: the smallest dividers first
    seen, configs = set(), []
    for _, _, p in found:
        key = (round(p.f_out_mhz, 9), round(p.f_vco_mhz, 9))
        if key not in seen:
            seen.add(key)
            configs.append(p)
    return configs


def pll_params(f_in_mhz: float, f_out_mhz: float) -> PLLParams:
    """The EHXPLLL dividers making the clock nearest to ``f_out_mhz`` from ``f_in_mhz`` (the
    VCO nearest mid-range).

    Raises
    ------
    ValueError
        ``f_out_mhz`` outside what the PLL can make (3.125 .. 400 MHz), or no divider set
        within 0.5 % of it (the message names the nearest clock the PLL makes).
    """
    if not OUT_MHZ[0] <= f_out_mhz <= OUT_MHZ[1]:
        raise ValueError(f"an ECP5 PLL makes {OUT_MHZ[0]} .. {OUT_MHZ[1]:g} MHz, not "
                         f"{f_out_mhz:g} MHz; choose a clock in that range")
    configs = pll_configs(f_in_mhz, f_out_mhz)
    if configs:
        return configs[0]
    outs = [out for _, _, out in _clkop_dividers(f_in_mhz)
            if any(VCO_MHZ[0] <= out * op <= VCO_MHZ[1] for op in range(1, 129))]
    near = (f" (nearest: {min(outs, key=lambda o: abs(o - f_out_mhz)):.4g} MHz)"
            if outs else "")
    step = f_in_mhz / int(f_in_mhz // PFD_MHZ[0])
    raise ValueError(f"an ECP5 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz"
                     f"{near}; choose a clock the PLL makes, e.g. a multiple of "
                     f"{step:g} MHz")


class EHXPLLL(wiring.Component):
    """One ECP5 PLL: ``clk_out`` (CLKOP) and ``clk_os`` (CLKOS, when ``params.clkos_div`` is
    set) from ``clk_in`` with the dividers of ``params``.

    Interface attributes
    --------------------
    clk_in : In(1), clk_out : Out(1), clk_os : Out(1), locked : Out(1)
    """

    clk_in: In(1)
    clk_out: Out(1)
    clk_os: Out(1)
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
        clkos = {} if p.clkos_div is None else {
            "a_FREQUENCY_PIN_CLKOS": f"{p.f_os_mhz:g}",
            "p_CLKOS_ENABLE": "ENABLED", "p_CLKOS_DIV": p.clkos_div,
            "p_CLKOS_CPHASE": p.clkos_div - 1, "p_CLKOS_FPHASE": 0, "o_CLKOS": self.clk_os}
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
            o_CLKOP=self.clk_out, o_LOCK=self.locked, **clkos,
        )
        return m


def global_reset(m: Module, domain: str, reset, platform) -> None:
    """Drive ``domain``'s reset from ``reset`` (a flip-flop's output, clocked by the domain's
    clock: the reset's path is then register to register) through a ``DCCA`` on ECP5, so that
    it reaches the flip-flops on a global network (nextpnr-ecp5 promotes only clocks by itself:
    the reset of a 2x2 fabric, 33,052 flip-flop LSR pins, was otherwise routed over general
    wires, router2's most congested net in its first iteration). Elsewhere (simulation)
    directly.

    The DCCA's ``CE`` is left unconnected (enabled), as on the DCCAs nextpnr inserts for clocks:
    tied to 1, nextpnr routed the constant into the buffer's tile too, and one dense-core
    placement then had no route left for ``CLKI`` ("Failed to route arc 0.0 of net 'rst_q' ...
    to X0/Y0/G_CLKI_TDCC0"); the same netlist without ``CE`` routed.
    """
    if is_ecp5(platform):
        glb = Signal(name=f"{domain}_rst_global")
        m.submodules[f"{domain}_rst_dcca"] = Instance("DCCA", i_CLKI=reset, o_CLKO=glb)
        m.d.comb += ResetSignal(domain).eq(glb)
    else:
        m.d.comb += ResetSignal(domain).eq(reset)
