"""NeuroLoom: an open RTL generator for a many-core neuromorphic fabric running S4D models.

One import name, whose subpackages are the project's layers (bottom to top; none imports a
layer above it, see ``docs/house.md`` and ``tests/test_package.py``):

* :mod:`neuroloom.contract` -- every format and number the others share: ``FabricConfig``,
  the ``data`` layouts, fixed-point arithmetic, ISA encoding, host frames, config images, and
  the driver/fabric transport interface.
* :mod:`neuroloom.hw` -- Amaranth gateware (repository folder ``hw/``).
* :mod:`neuroloom.firmware` -- microcode assembler and programs, model import, quantization,
  compiler, host driver (``firmware/``).
* :mod:`neuroloom.sim` -- golden model, host-link reference model, Verilator machinery
  (``sim/``).
* :mod:`neuroloom.fpga` -- the synthesis flow and board tops (``fpga/``).
* :mod:`neuroloom.cli` -- the ``neuroloom`` command.
"""

__version__ = "0.1.0"
