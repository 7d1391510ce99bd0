"""A GALS fabric on an ECP5 with a clock of its own per tile, from PLL outputs: what
``bench/gals_bench.py pnr`` places and routes.

:class:`GalsPllTop` clocks tile (x, y) of a GALS fabric (``FabricConfig.gals``) from one output
of an ``EHXPLLL`` (CLKOP, CLKOS, CLKOS2, CLKOS3 of one VCO: up to four tiles per PLL, each at
``VCO / divider``, dividers chosen so no two tiles share a frequency) and the host domain
(``sync``: host link, barrier, counters) from CLKOP of a PLL of its own. Resets follow the order
``docs/noc.md`` (GALS, Reset) asks: every domain is held in reset until every PLL has locked;
each tile leaves reset through a :class:`~amaranth.lib.cdc.ResetSynchronizer` of its own clock,
the host domain only once every tile has left it.

The host streams are not pins: like :class:`~neuroloom.fpga.ioring.IORing`, every host input bit
comes from a shift chain fed by one pin (``si``) and every output bit goes into a loadable shift
register read out on one pin (``so``), both in ``sync``, so every path nextpnr times is register
to register and the host link is measured at the host clock.

:func:`lpf` writes the constraints: the oscillator's pin and ``FREQUENCY PORT``; nextpnr-ecp5
derives every PLL output's constraint from the PLL's dividers (``docs/noc.md``, GALS,
constraints).
"""

import dataclasses

from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from neuroloom.contract.config import FabricConfig
from neuroloom.hw.fabric import Fabric

from .ecp5 import EHXPLLL, OUT_MHZ, VCO_MHZ, pll_params
from .ioring import serial_ring

__all__ = ["GalsClocks", "GalsPllTop", "TilePLL", "gals_clocks", "lpf"]

#: the ULX3S-85F oscillator: 25 MHz on pin G2
OSC_MHZ = 25.0
OSC_PIN = "G2"
#: EHXPLLL outputs, in the order tiles take them
PLL_OUTPUTS = ("CLKOP", "CLKOS", "CLKOS2", "CLKOS3")


@dataclasses.dataclass(frozen=True)
class GalsClocks:
    """The clocks of a :class:`GalsPllTop`: the tile PLLs' dividers and the host PLL.

    Attributes
    ----------
    tile_plls : per tile PLL, ``(clki_div, clkfb_div, dividers)``: VCO = ``f_in / clki_div *
        clkfb_div * dividers[0]`` (feedback from CLKOP), output k at ``VCO / dividers[k]``
    host : the host domain's PLL (CLKOP only)
    f_in_mhz : the oscillator
    """

    tile_plls: tuple[tuple[int, int, tuple[int, ...]], ...]
    host: object
    f_in_mhz: float

    def vco_mhz(self, k: int) -> float:
        clki, fb, divs = self.tile_plls[k]
        return self.f_in_mhz / clki * fb * divs[0]

    @property
    def tile_mhz(self) -> list[float]:
        """The tile clocks, in tile order (``FabricConfig.core_xy`` order)."""
        return [self.vco_mhz(k) / d for k, (_, _, divs) in enumerate(self.tile_plls)
                for d in divs]

    @property
    def host_mhz(self) -> float:
        return self.host.f_out_mhz


def gals_clocks(tiles: int, *, tile_mhz: float = 60.0, host_mhz: float = 50.0,
                f_in_mhz: float = OSC_MHZ) -> GalsClocks:
    """Clocks for ``tiles`` tiles: each tile PLL runs its VCO at the one making ``tile_mhz`` on
    CLKOP (:func:`~neuroloom.fpga.ecp5.pll_params`) and its further outputs at the next
    dividers (VCO / (d + 1), VCO / (d + 2), ...: e.g. 60, 54.5, 50, 46.2 MHz from a 600 MHz
    VCO), so the tile clocks are all different and none is a multiple of another's period.

    Raises ``ValueError`` when a clock is out of the PLL's range.
    """
    if not isinstance(tiles, int) or tiles < 1:
        raise ValueError(f"tiles={tiles!r} must be a positive integer")
    p = pll_params(f_in_mhz, tile_mhz)
    vco = p.f_vco_mhz
    if not VCO_MHZ[0] <= vco <= VCO_MHZ[1]:
        raise ValueError(f"VCO {vco:g} MHz out of range")
    plls = []
    left = tiles
    while left:
        n = min(left, len(PLL_OUTPUTS))
        divs = tuple(p.clkop_div + i for i in range(n))
        if vco / divs[-1] < OUT_MHZ[0]:
            raise ValueError(f"tile clock {vco / divs[-1]:g} MHz is below the PLL's range")
        plls.append((p.clki_div, p.clkfb_div, divs))
        left -= n
    return GalsClocks(tuple(plls), pll_params(f_in_mhz, host_mhz), f_in_mhz)


class TilePLL(wiring.Component):
    """One ``EHXPLLL`` with up to four outputs (CLKOP feedback), ``clk_out[k]`` at ``VCO /
    dividers[k]``.

    Interface attributes
    --------------------
    clk_in : In(1), clk_out : Out(len(dividers)), locked : Out(1)
    """

    def __init__(self, f_in_mhz: float, clki_div: int, clkfb_div: int, dividers):
        if not 1 <= len(dividers) <= len(PLL_OUTPUTS):
            raise ValueError(f"an EHXPLLL has 1..4 outputs, not {len(dividers)}")
        self._f_in = f_in_mhz
        self._clki, self._fb, self._divs = clki_div, clkfb_div, tuple(dividers)
        super().__init__({"clk_in": In(1), "clk_out": Out(len(dividers)), "locked": Out(1)})

    def elaborate(self, platform):
        m = Module()
        vco = self._f_in / self._clki * self._fb * self._divs[0]
        outs = {}
        for k, (name, div) in enumerate(zip(PLL_OUTPUTS, self._divs)):
            outs.update({f"a_FREQUENCY_PIN_{name}": f"{vco / div:g}",
                         f"p_{name}_ENABLE": "ENABLED", f"p_{name}_DIV": div,
                         f"p_{name}_CPHASE": div - 1 if k else div // 2,
                         f"p_{name}_FPHASE": 0, f"o_{name}": self.clk_out[k]})
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self._f_in:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self._clki, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=self._fb,
            i_RST=0, i_STDBY=0, i_CLKI=self.clk_in, i_CLKFB=self.clk_out[0],
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked, **outs,
        )
        return m


class GalsPllTop(wiring.Component):
    """A GALS fabric of ``cfg`` with PLL clocks and serialized host streams (module docstring).

    Ports: ``clk_in`` (the oscillator), ``si``, ``load``, ``so``.
    """

    clk_in: In(1)
    si: In(1)
    load: In(1)
    so: Out(1)

    def __init__(self, cfg: FabricConfig, clocks: GalsClocks | None = None):
        if not isinstance(cfg, FabricConfig) or not cfg.gals:
            raise ValueError("GalsPllTop needs a GALS FabricConfig (gals=True)")
        self._cfg = cfg
        self._clocks = clocks or gals_clocks(cfg.num_cores)
        if len(self._clocks.tile_mhz) != cfg.num_cores:
            raise ValueError(f"{len(self._clocks.tile_mhz)} tile clocks for "
                             f"{cfg.num_cores} tiles")
        super().__init__()

    @property
    def clocks(self) -> GalsClocks:
        return self._clocks

    def elaborate(self, platform):
        m = Module()
        cfg, clocks = self._cfg, self._clocks
        m.submodules.fabric = fabric = Fabric(cfg)

        locks = []
        tile_clks = []
        for k, (clki, fb, divs) in enumerate(clocks.tile_plls):
            pll = TilePLL(clocks.f_in_mhz, clki, fb, divs)
            m.submodules[f"tile_pll{k}"] = pll
            m.d.comb += pll.clk_in.eq(self.clk_in)
            locks.append(pll.locked)
            tile_clks += [pll.clk_out[i] for i in range(len(divs))]
        m.submodules.host_pll = host_pll = EHXPLLL(clocks.host)
        m.d.comb += host_pll.clk_in.eq(self.clk_in)
        locks.append(host_pll.locked)
        unlocked = Signal()
        m.d.comb += unlocked.eq(~Cat(*locks).all())

        # tile (x, y): domain pll_x_y, its reset released by a ResetSynchronizer of its clock
        tiles_in_reset = []
        for k in range(cfg.num_cores):
            x, y = cfg.core_xy(k)
            dom = f"pll_{x}_{y}"
            m.domains += ClockDomain(dom)
            m.d.comb += ClockSignal(dom).eq(tile_clks[k])
            m.submodules[f"rst_sync_{x}_{y}"] = ResetSynchronizer(unlocked, domain=dom)
            m.d.comb += [getattr(fabric, f"clk_{x}_{y}").eq(ClockSignal(dom)),
                         getattr(fabric, f"rst_{x}_{y}").eq(ResetSignal(dom))]
            tiles_in_reset.append(ResetSignal(dom))
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(host_pll.clk_out)
        # the host domain leaves reset last: after every tile has (asynchronous assertion,
        # release synchronized to the host clock)
        m.submodules.rst_sync_host = ResetSynchronizer(unlocked | Cat(*tiles_in_reset).any(),
                                                       domain="sync")

        serial_ring(m, fabric, self.si, self.load, self.so, skip=("clk_", "rst_"))
        return m


def lpf(clocks: GalsClocks | None = None, *, pin: str = OSC_PIN) -> str:
    """nextpnr-ecp5 constraints of a :class:`GalsPllTop` on the ULX3S-85F: the oscillator's pin
    and frequency. Every PLL output's constraint is derived by nextpnr from the dividers."""
    f_in = clocks.f_in_mhz if clocks else OSC_MHZ
    return (f'LOCATE COMP "clk_in" SITE "{pin}";\n'
            f'IOBUF PORT "clk_in" IO_TYPE=LVCMOS33;\n'
            f'FREQUENCY PORT "clk_in" {f_in:g} MHZ;\n')
