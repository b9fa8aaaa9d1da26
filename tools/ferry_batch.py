#!/usr/bin/env python3
"""Decoder for ferry's packed batches, format ferry-batch-v1 (docs/batch-format.md).

A second implementation of the spec, independent of ferry's Rust code, for the cloud
side: Python 3 standard library only, plus the `lz4` package (PyPI) for batches
compressed with lz4.

As a module:
    import ferry_batch
    events = ferry_batch.decode(open("batch.bin", "rb").read())
    # [{"key": "gw-7-48213", "seq": 48213, "topic": ..., "payload": b"...",
    #   "received_ms": ..., "qos": 1, "retain": False, "user_properties": [("k", "v")]}]
    ferry_batch.decode_batch(data)  # also gives the gateway id and the compression
    ferry_batch.json_line(event)    # the line `ferry unpack` prints for it

As a script, the same output as `ferry unpack`, byte for byte:
    python3 tools/ferry_batch.py < batch.bin
Exit status: 0 ok, 1 malformed batch (one line on stderr), 2 usage.
"""

import json
import sys

MAGIC = b"\xfbFRY"
VERSION = 1
COMPRESSION = {0: "none", 1: "lz4"}  # 2 is reserved for zstd
MAX_GATEWAY_LEN = 255
MAX_EVENTS = 65_535
MAX_RAW_LEN = 256 << 20
MIN_EVENT_LEN = 5
LZ4_MAX_RATIO = 255
FLAG_QOS, FLAG_RETAIN, FLAG_PROPERTIES = 0b0011, 0b0100, 0b1000


class BatchError(ValueError):
    """The input is not a valid ferry-batch-v1 batch."""


class Lz4Missing(RuntimeError):
    """The batch is compressed with lz4 and the `lz4` package is not installed."""


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as ferry's src/store/crc32c.rs."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class _Reader:
    def __init__(self, buf, pos=0):
        self.buf, self.pos = buf, pos

    def left(self):
        return len(self.buf) - self.pos

    def take(self, n, what):
        if n > self.left():
            raise BatchError(f"truncated: the input ends inside the {what}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what):
        return self.take(1, what)[0]

    def varint(self, what):
        """LEB128, shortest encoding only, at most 64 bits."""
        value = 0
        for i in range(10):
            if self.pos >= len(self.buf):
                raise BatchError(f"truncated: the input ends inside the {what}")
            b = self.buf[self.pos]
            self.pos += 1
            if i == 9 and b > 1:
                raise BatchError(f"{what} is not the shortest varint encoding of a 64-bit value")
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise BatchError(f"{what} is not the shortest varint encoding of a 64-bit value")
                return value
        raise BatchError(f"{what} is not the shortest varint encoding of a 64-bit value")

    def text(self, what, most=None):
        n = self.varint(what)
        if most is not None and n > most:
            raise BatchError(f"{what} is {n}, over the limit of {most}")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BatchError(f"{what} is not valid UTF-8") from None


def _undelta(prev, z):
    """Inverse of the zigzag delta: wrapping 64-bit arithmetic."""
    d = (z >> 1) ^ -(z & 1)
    return (prev + d) & 0xFFFFFFFFFFFFFFFF


def _lz4_decompress(data, size):
    try:
        import lz4.block
    except ImportError:
        raise Lz4Missing("the batch is compressed with lz4 and the Python lz4 package "
                         "is missing: pip install lz4") from None
    try:
        out = lz4.block.decompress(data, uncompressed_size=size)
    except Exception:  # lz4.block.LZ4BlockError, or a size it refuses
        raise BatchError("lz4 body does not decompress to its declared length") from None
    if len(out) != size:
        raise BatchError("lz4 body does not decompress to its declared length")
    return out


def decode_batch(data):
    """Checks and decodes one batch: {"gateway", "compression", "events"}.

    Raises BatchError for anything the spec says a decoder must refuse, Lz4Missing for
    an lz4 batch without the lz4 package."""
    data = bytes(data)
    if len(data) < len(MAGIC):
        if MAGIC.startswith(data):
            raise BatchError("truncated: the input ends inside the magic bytes")
        raise BatchError("not a ferry batch: bad magic bytes")
    r = _Reader(data)
    if r.take(4, "magic bytes") != MAGIC:
        raise BatchError("not a ferry batch: bad magic bytes")
    version = r.byte("version")
    if version != VERSION:
        raise BatchError(f"batch version {version} is not supported (this decoder reads version 1)")
    flags = r.byte("header flags")
    if flags:
        raise BatchError(f"batch header flags {flags:#04x} set bits that version 1 does not define")
    cid = r.byte("compression id")
    if cid not in COMPRESSION:
        raise BatchError(f"unknown compression id {cid}")
    gateway = r.text("gateway id", MAX_GATEWAY_LEN)
    count = r.varint("event count")
    if count > MAX_EVENTS:
        raise BatchError(f"event count is {count}, over the limit of {MAX_EVENTS}")
    raw_len = r.varint("uncompressed length")
    if raw_len > MAX_RAW_LEN:
        raise BatchError(f"uncompressed length is {raw_len}, over the limit of {MAX_RAW_LEN}")
    body_len = r.varint("body length")
    header_len = r.pos
    ok = body_len == raw_len if cid == 0 else raw_len <= body_len * LZ4_MAX_RATIO
    if not ok:
        raise BatchError(
            f"uncompressed body is {raw_len} bytes but the compressed body is {body_len} bytes"
        )
    if count > raw_len // MIN_EVENT_LEN:
        raise BatchError(f"header declares {count} events, more than a {raw_len}-byte body can hold")
    left = len(data) - header_len
    if left < body_len + 4:
        raise BatchError("truncated: the input ends inside the " + ("body" if left < body_len else "checksum"))
    if left > body_len + 4:
        raise BatchError(f"{left - body_len - 4} bytes after the end of the batch")
    wire = data[header_len:header_len + body_len]
    stored = int.from_bytes(data[header_len + body_len:], "little")
    body = wire if cid == 0 else _lz4_decompress(wire, raw_len)
    computed = crc32c(data[:header_len] + body)
    if computed != stored:
        raise BatchError(f"checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
    return {
        "gateway": gateway,
        "compression": COMPRESSION[cid],
        "events": _events(gateway, count, body),
    }


def _events(gateway, count, body):
    r = _Reader(body)
    events = []
    seq = ms = 0
    for index in range(count):
        if r.left() == 0:
            raise BatchError(f"header declares {count} events but the body holds {index}")
        seq = _undelta(seq, r.varint("event seq"))
        ms = _undelta(ms, r.varint("event time"))
        flags = r.byte("event flags")
        if flags & ~0x0F or flags & FLAG_QOS == 3:
            raise BatchError(f"event {index}: flags {flags:#04x} (qos 3 or undefined bits)")
        topic = r.text("topic")
        payload = r.take(r.varint("payload length"), "payload")
        props = []
        if flags & FLAG_PROPERTIES:
            n = r.varint("user property count")
            if n == 0:
                raise BatchError(f"event {index}: user properties flagged but none follow")
            if n > r.left() // 2:
                raise BatchError("truncated: the input ends inside the user properties")
            for _ in range(n):
                props.append((r.text("user property name"), r.text("user property value")))
        events.append({
            "key": f"{gateway}-{seq}",
            "seq": seq,
            "topic": topic,
            "payload": payload,
            "received_ms": ms,
            "qos": flags & FLAG_QOS,
            "retain": bool(flags & FLAG_RETAIN),
            "user_properties": props,
        })
    if r.left():
        raise BatchError(f"{r.left()} bytes in the body after its last declared event")
    return events


def decode(data):
    """The events of one batch, as dicts (payload as bytes). Raises BatchError."""
    return decode_batch(data)["events"]


def json_line(event):
    """The JSON line `ferry unpack` prints for `event` (without the newline): the payload
    as text when it is UTF-8, otherwise as lowercase hex under `payload_hex`."""
    out = {"key": event["key"], "seq": event["seq"], "topic": event["topic"]}
    try:
        out["payload"] = event["payload"].decode("utf-8")
    except UnicodeDecodeError:
        out["payload_hex"] = event["payload"].hex()
    out["received_ms"] = event["received_ms"]
    out["qos"] = event["qos"]
    out["retain"] = event["retain"]
    out["user_properties"] = [list(p) for p in event["user_properties"]]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def main(argv):
    if argv:
        print("usage: python3 ferry_batch.py < batch.bin  (one ferry-batch-v1 batch on stdin)",
              file=sys.stderr)
        return 2
    most = MAX_RAW_LEN + 1024  # the largest body, its header and checksum
    data = sys.stdin.buffer.read(most + 1)
    try:
        if len(data) > most:
            raise BatchError(f"input over {most} bytes")
        events = decode(data)
    except BatchError as e:
        print(f"ferry_batch.py: malformed batch: {e}", file=sys.stderr)
        return 1
    except Lz4Missing as e:
        print(f"ferry_batch.py: {e}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    for event in events:
        out.write(json_line(event).encode("utf-8") + b"\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
