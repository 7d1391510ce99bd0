"""Helpers shared by the test files: random valid core configurations and programs
(:mod:`tests.support.core`). The cocotb testbench of a core is library code,
:mod:`neuroloom.sim.core_tb`, because benches drive it too."""
