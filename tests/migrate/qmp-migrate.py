#!/usr/bin/env python3
"""qmp-migrate.py SRC_QMP_SOCKET PORT DOWNTIME_MS: migrate a QEMU to
tcp:127.0.0.1:PORT through QMP (bandwidth cap lifted, downtime limit set)
and print query-migrate's final answer as one JSON line.  Used by
bench-migrate.sh for the QEMU baseline."""
import json
import socket
import sys
import time


def qmp(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())

    def cmd(name, **args):
        f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                return r

    cmd("qmp_capabilities")
    return cmd


def main():
    cmd = qmp(sys.argv[1])
    cmd("migrate-set-parameters", **{"downtime-limit": int(sys.argv[3]),
                                     "max-bandwidth": 10 * 1024 ** 3})
    r = cmd("migrate", uri="tcp:127.0.0.1:" + sys.argv[2])
    if "error" in r:
        print(json.dumps(r, separators=(",", ":")))
        return 1
    for _ in range(6000):
        r = cmd("query-migrate")["return"]
        if r.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    print(json.dumps(r, separators=(",", ":")))
    return 0 if r.get("status") == "completed" else 1


sys.exit(main())
