"""FPGA side: the open synthesis flow (Yosys + nextpnr from YoWASP) and board tops."""
