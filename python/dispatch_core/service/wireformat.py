"""Reading one top-level field of a serialized protobuf message from the wire format,
without building the message: the servicer hands requests to the core as bytes, and
decoding a whole request to read one id or grade would cost more than the call."""

from __future__ import annotations


def first_field(message: bytes, number: int) -> int | bytes | None:
    """The first top-level field `number` of a serialized message: an int for a varint,
    bytes for a length-delimited field, None when absent or malformed."""
    i, end = 0, len(message)
    try:
        while i < end:
            key, i = _varint(message, i)
            wire = key & 7
            if wire == 0:
                value, i = _varint(message, i)
                if key >> 3 == number:
                    return value
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                length, i = _varint(message, i)
                if key >> 3 == number:
                    return message[i : i + length] if i + length <= end else None
                i += length
            else:  # groups are not used by dispatch.v1
                return None
    except IndexError:
        return None
    return None


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
