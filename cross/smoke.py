#!/usr/bin/env python3
"""Smoke test of one ferry binary, native or under qemu-user:

    python3 cross/smoke.py -- [qemu-aarch64 -L SYSROOT] path/to/ferry

It starts ferry on loopback ports with a throw-away store, the way systemd would
(NOTIFY_SOCKET + WATCHDOG_USEC), then checks, each with a deadline:
  1. ferry reports READY=1 and both listeners;
  2. an MQTT 3.1.1 QoS 1 publish reaches an MQTT subscriber (raw packets);
  3. a NATS publish reaches a NATS subscriber (raw protocol: INFO, CONNECT, SUB, PUB, PING);
  4. a WATCHDOG=1 ping arrives;
  5. SIGTERM makes it send STOPPING=1 and exit 0.
Only the Python standard library is used, so it runs on a fresh Debian machine.
Exit status 0 when every check passed. FERRY_SMOKE_TIMEOUT scales the deadlines (seconds,
default 60: qemu on a busy 2-core runner is slow to start a binary). FERRY_SMOKE_NATS=0
skips check 3 (only while the NATS listener is unfinished).
"""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = float(os.environ.get("FERRY_SMOKE_TIMEOUT", "60"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fail(msg, log=None):
    print(f"SMOKE FAIL: {msg}", file=sys.stderr)
    if log is not None:
        print("---- ferry log ----\n" + "\n".join(log) + "\n----", file=sys.stderr)
    sys.exit(1)


def wait_for(what, cond, log, limit=TIMEOUT):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    fail(f"timed out after {limit:.0f}s waiting for {what}", log)


# ---------------------------------------------------------------- MQTT 3.1.1, by hand

def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def mqtt_packet(kind, body):
    n, rem = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        rem += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + rem + body


def mqtt_read(sock):
    """One packet: (first byte, body)."""
    head = recv_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = recv_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return head, recv_exact(sock, length)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def mqtt_connect(addr, client_id):
    s = socket.create_connection(addr, timeout=TIMEOUT)
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 30) + mqtt_str(client_id)
    s.sendall(mqtt_packet(0x10, body))
    head, rest = mqtt_read(s)
    if head != 0x20 or rest[1:2] != b"\x00":
        raise RuntimeError(f"CONNACK expected, got {head:#x} {rest!r}")
    return s


def mqtt_round_trip(addr):
    topic, payload = "smoke/ferry", b"hello from the smoke test"
    sub = mqtt_connect(addr, "smoke-sub")
    sub.sendall(mqtt_packet(0x82, struct.pack("!H", 1) + mqtt_str(topic) + b"\x01"))
    head, rest = mqtt_read(sub)
    if head != 0x90 or rest[2:] != b"\x01":
        raise RuntimeError(f"SUBACK granting QoS 1 expected, got {head:#x} {rest!r}")
    pub = mqtt_connect(addr, "smoke-pub")
    pub.sendall(mqtt_packet(0x32, mqtt_str(topic) + struct.pack("!H", 7) + payload))
    head, rest = mqtt_read(pub)
    if head != 0x40 or rest != struct.pack("!H", 7):
        raise RuntimeError(f"PUBACK for packet 7 expected, got {head:#x} {rest!r}")
    head, rest = mqtt_read(sub)
    if head & 0xF0 != 0x30:
        raise RuntimeError(f"PUBLISH expected on the subscriber, got {head:#x}")
    tlen = struct.unpack("!H", rest[:2])[0]
    got_topic = rest[2 : 2 + tlen].decode()
    qos = (head >> 1) & 3
    got_payload = rest[2 + tlen + (2 if qos else 0) :]
    if qos:
        sub.sendall(mqtt_packet(0x40, rest[2 + tlen : 4 + tlen]))
    if (got_topic, got_payload) != (topic, payload):
        raise RuntimeError(f"got {got_topic!r} {got_payload!r}")
    for s in (pub, sub):
        s.sendall(b"\xe0\x00")  # DISCONNECT
        s.close()


# ---------------------------------------------------------------- NATS, by hand

def nats_round_trip(addr):
    s = socket.create_connection(addr, timeout=TIMEOUT)
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before INFO")
        buf += chunk
    if not buf.startswith(b"INFO "):
        raise RuntimeError(f"INFO expected, got {buf[:80]!r}")
    buf = buf.split(b"\r\n", 1)[1]
    s.sendall(b"CONNECT {}\r\nSUB x 1\r\nPUB x 2\r\nhi\r\nPING\r\n")
    want = b"MSG x 1 2\r\nhi\r\n"
    while not (want in buf and b"PONG\r\n" in buf):
        if b"-ERR" in buf:
            raise RuntimeError(f"server error: {buf!r}")
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed; got {buf!r}")
        buf += chunk
    s.close()


# ---------------------------------------------------------------- the run

def main():
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ferry-smoke-") as tmp:
        notify_path = os.path.join(tmp, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(0.05)
        states = []

        def drain_notify():
            try:
                while True:
                    states.extend(notify.recv(4096).decode().split("\n"))
            except (socket.timeout, BlockingIOError):
                pass

        config = os.path.join(tmp, "ferry.toml")
        with open(config, "w") as f:
            f.write(
                '[mqtt]\nlisten = "127.0.0.1:0"\n[nats]\nlisten = "127.0.0.1:0"\n'
                f'[store]\ndir = "{tmp}/store"\n[log]\nlevel = "info"\n'
            )
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000")
        env.pop("WATCHDOG_PID", None)
        env.pop("RUST_LOG", None)
        proc = subprocess.Popen(
            argv + ["--config", config],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = []

        def reader():
            for line in proc.stderr:
                log.append(ANSI.sub("", line.rstrip("\n")))

        threading.Thread(target=reader, daemon=True).start()
        try:
            def addr_of(marker):
                for line in log:
                    if marker in line:
                        m = re.search(r"addr=(\S+)", line)
                        if m:
                            host, port = m.group(1).rsplit(":", 1)
                            return (host, int(port))
                if proc.poll() is not None:
                    fail(f"ferry exited early with status {proc.returncode}", log)
                return None

            mqtt = wait_for("the MQTT listener", lambda: addr_of("MQTT listener ready"), log)
            nats = wait_for("the NATS listener", lambda: addr_of("NATS listener ready"), log)

            def ready():
                drain_notify()
                return "READY=1" in states

            wait_for("READY=1 on NOTIFY_SOCKET", ready, log)
            t_ready = time.monotonic() - started
            try:
                mqtt_round_trip(mqtt)
            except Exception as e:  # noqa: BLE001 - report whatever broke, with the log
                fail(f"MQTT round trip: {e!r}", log)
            print(f"smoke: MQTT QoS 1 publish -> subscriber ok ({mqtt[0]}:{mqtt[1]})")
            if os.environ.get("FERRY_SMOKE_NATS", "1") == "0":
                print("smoke: NATS round trip SKIPPED (FERRY_SMOKE_NATS=0)")
            else:
                try:
                    nats_round_trip(nats)
                except Exception as e:  # noqa: BLE001
                    fail(f"NATS round trip: {e!r}", log)
                print(f"smoke: NATS PUB -> MSG ok ({nats[0]}:{nats[1]})")

            def watchdog():
                drain_notify()
                return "WATCHDOG=1" in states

            wait_for("WATCHDOG=1 on NOTIFY_SOCKET", watchdog, log, limit=10)
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                fail("no exit within the deadline after SIGTERM", log)
            drain_notify()
            if code != 0:
                fail(f"exit status {code} after SIGTERM (expected 0)", log)
            if "STOPPING=1" not in states:
                fail(f"no STOPPING=1 on NOTIFY_SOCKET (got {states})", log)
            print(
                f"smoke: ok: ready after {t_ready:.1f}s, READY/WATCHDOG/STOPPING notified, "
                f"clean exit {time.monotonic() - t_term:.1f}s after SIGTERM"
            )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
