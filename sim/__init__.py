"""NeuroLoom simulation support: tool discovery, Verilator/cocotb runners, golden models."""
