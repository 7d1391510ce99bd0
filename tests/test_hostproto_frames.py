"""Host protocol frames as the host sees them: defaults, error descriptions and the payload
limit. The mutation run (``make mutate``) found these reached by no test that could tell them
from a neighbouring value; the expected values here are the protocol's documented ones
(docs/hostlink.md), not read from the module."""

from neuroloom.contract.config import FabricConfig
from neuroloom.contract.hostproto import (
    ERROR,
    MAX_PAYLOAD,
    Cmd,
    ErrorCode,
    Frame,
    decode_frames,
    encode_frame,
    parse_status,
    status_payload,
)
from neuroloom.sim.golden import GoldenFabric
from neuroloom.sim.hostlink_model import HostLinkModel


def test_a_frame_without_a_sequence_number_has_seq_0():
    assert Frame(Cmd.STATUS).seq == 0 and Frame(Cmd.STATUS).payload == []
    assert decode_frames(encode_frame(Cmd.STATUS))[0].seq == 0
    assert encode_frame(Cmd.CLEAR)[0] == Cmd.CLEAR              # header: opcode, seq 0, length 0


def test_error_frames_describe_their_code():
    assert Frame(ERROR, 7, [ErrorCode.BAD_CHECKSUM]).describe() == "ERROR BAD_CHECKSUM (seq 7)"
    assert Frame(ERROR, 2, [ErrorCode.BAD_OPCODE, 9]).describe() == "ERROR BAD_OPCODE (seq 2)"
    assert Frame(ERROR, 1, []).describe() == "ERROR 0 (seq 1)"          # no code: 0, no name
    assert Frame(ERROR, 1, [200]).describe() == "ERROR 200 (seq 1)"
    assert Frame(Cmd.READ | 0x80, 3, [1, 2]).describe() == "frame 0x82 seq 3 (2 words)"


def test_payload_limit_is_the_link_buffer():
    """510 payload words: with the header and the checksum, the link's 512-word frame buffer
    (one 512 x 32 block RAM); the host link model takes 510 and refuses 511."""
    assert MAX_PAYLOAD == 510
    link = HostLinkModel(GoldenFabric(FabricConfig(mesh_w=1, mesh_h=1)))
    assert link.check(encode_frame(Cmd.READ, [0] * 510, seq=4)) is None
    assert link.check(encode_frame(Cmd.READ, [0] * 511, seq=5)) == ErrorCode.BAD_LENGTH


def test_status_step_is_a_32_bit_word():
    """The STATUS step is the fabric's step counter modulo 2**32 (one payload word)."""
    payload = status_payload(3, 2, 2 ** 32 + 5, overrun=True)
    assert payload[2] == 5 and all(0 <= w < 2 ** 32 for w in payload)
    assert parse_status(payload) == {"mesh_w": 3, "mesh_h": 2, "step": 5, "overrun": True}
