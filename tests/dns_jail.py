"""Run a command with no network but loopback and a resolver that only records: every DNS query it makes is
written to a log. Used as ``unshare --net --mount python dns_jail.py LOG -- COMMAND...`` (root, or a user
namespace): the new network namespace has only ``lo``; ``/etc/resolv.conf`` is bind-mounted (in this mount
namespace only) to point at 127.0.0.1, where a UDP server notes each question and answers REFUSED."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading


def question_name(packet: bytes) -> str:
    labels, i = [], 12  # after the 12-byte DNS header
    while i < len(packet) and packet[i]:
        length = packet[i]
        labels.append(packet[i + 1:i + 1 + length].decode("ascii", "replace"))
        i += 1 + length
    return ".".join(labels)


def serve(sock: socket.socket, log_path: str) -> None:
    while True:
        packet, peer = sock.recvfrom(4096)
        if len(packet) < 12:
            continue
        with open(log_path, "a") as log:
            log.write(question_name(packet) + "\n")
        ident, flags = struct.unpack(">HH", packet[:4])
        reply = struct.pack(">HHHHHH", ident, 0x8000 | (flags & 0x0100) | 5, 0, 0, 0, 0)  # REFUSED
        sock.sendto(reply, peer)


def main() -> int:
    log_path, separator, *command = sys.argv[1:]
    assert separator == "--" and command, "usage: dns_jail.py LOG -- COMMAND..."
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False)
    resolv.write("nameserver 127.0.0.1\n")
    resolv.close()
    subprocess.run(["mount", "--bind", resolv.name, "/etc/resolv.conf"], check=True)
    open(log_path, "w").close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    threading.Thread(target=serve, args=(sock, log_path), daemon=True).start()
    # the jail itself works: a lookup of a name that is not in /etc/hosts reaches the recorder
    try:
        socket.getaddrinfo("jail-self-test.invalid", 80)
    except socket.gaierror:
        pass
    try:
        return subprocess.run(command).returncode
    finally:
        os.unlink(resolv.name)


if __name__ == "__main__":
    sys.exit(main())
