"""Server text frames at each length encoding of RFC 6455."""

import pytest

from pbxws.protocol.frames import text_frame


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_length_encodings(size: int) -> None:
    """The header length field matches RFC 6455 for 7-, 16- and 64-bit lengths."""
    payload = b"x" * size
    frame = text_frame(payload)
    assert frame[0] == 0x81
    assert frame.endswith(payload)
    header = len(frame) - size
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)


def test_length_field_value() -> None:
    """The 16- and 64-bit length fields are big-endian (RFC 6455 §5.2)."""
    assert text_frame(b"x" * 300)[1:4] == bytes((126, 1, 44))
    assert text_frame(b"x" * 65536)[1:10] == bytes((127, 0, 0, 0, 0, 0, 1, 0, 0))
