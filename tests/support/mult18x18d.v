// A simulation model of the ECP5 MULT18X18D in the modes NeuroLoom instantiates, written from
// Lattice's sysDSP usage guide (FPGA-TN-02205, "ECP5 and ECP5-5G sysDSP Usage Guide"): A and B
// are 18-bit operands, signed where SIGNEDA / SIGNEDB is high; REG_INPUTA_CLK / REG_INPUTB_CLK =
// "CLK0" registers them on CLK0 (enabled by CE0, reset by RST0), REG_OUTPUT_CLK = "CLK0"
// registers the 36-bit product P. Every other mode (pipeline register, other clocks, cascade
// and shift sources, bypass) is refused at elaboration, as Yosys's own model refuses every
// registered mode: it cannot pass for a mode nobody checked.
// Only the ports NeuroLoom connects are modelled; C, the cascade and shift ports are ignored.
`default_nettype none
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE", parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE",
    parameter REG_PIPELINE_CLK = "NONE", parameter REG_PIPELINE_CE = "CE0",
    parameter REG_PIPELINE_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0",
    parameter CLK0_DIV = "ENABLED", parameter CLK1_DIV = "ENABLED",
    parameter CLK2_DIV = "ENABLED", parameter CLK3_DIV = "ENABLED",
    parameter HIGHSPEED_CLK = "NONE", parameter GSR = "ENABLED",
    parameter CAS_MATCH_REG = "FALSE", parameter SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED", parameter RESETMODE = "SYNC"
) (
    input wire A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input wire B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input wire C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output wire P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
    output wire P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33,
    output wire P34, P35
);
    generate
        if (REG_INPUTA_CLK != "CLK0" || REG_INPUTA_CE != "CE0" || REG_INPUTA_RST != "RST0" ||
            REG_INPUTB_CLK != "CLK0" || REG_INPUTB_CE != "CE0" || REG_INPUTB_RST != "RST0" ||
            REG_PIPELINE_CLK != "NONE" || REG_OUTPUT_CLK != "CLK0" ||
            REG_OUTPUT_CE != "CE0" || REG_OUTPUT_RST != "RST0" || MULT_BYPASS != "DISABLED" ||
            RESETMODE != "SYNC")
            UNMODELLED_MULT18X18D_MODE unmodelled();
    endgenerate
    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] ra = 18'd0, rb = 18'd0;
    reg sa = 1'b0, sb = 1'b0;
    reg [35:0] rp = 36'd0;
    // operands as 36-bit values: sign-extended where signed, zero-extended where not
    wire [35:0] xa = {{18{sa & ra[17]}}, ra};
    wire [35:0] xb = {{18{sb & rb[17]}}, rb};
    always @(posedge CLK0) begin
        if (RST0) begin
            ra <= 18'd0; rb <= 18'd0; sa <= 1'b0; sb <= 1'b0; rp <= 36'd0;
        end else if (CE0) begin
            ra <= a; rb <= b; sa <= SIGNEDA; sb <= SIGNEDB;
            rp <= xa * xb;      // the low 36 bits of the product of the extended operands
        end
    end
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
            P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
            P0} = rp;
endmodule
