#!/usr/bin/env python3
"""qmp-migrate.py SRC_QMP PORT DOWNTIME_MS [DST_QMP [AUTO_CONVERGE]]:
migrate a QEMU to tcp:127.0.0.1:PORT through QMP (bandwidth cap lifted:
the link is shaped outside QEMU; downtime limit set; the auto-converge
capability on when AUTO_CONVERGE is 1) and print query-migrate's final
answer as one JSON line, with three keys of ours added:
  bench-stop-to-resume-ms   source STOP event to destination RESUME event
                            (needs DST_QMP): the downtime as the guest sees
                            it, measured like vmfs-vmm's (pause on the
                            source to running on the destination); QEMU's
                            own "downtime" ends when the source has sent
                            the last byte
  bench-dirty-pages-rate    median of the non-zero ram.dirty-pages-rate
                            values seen while active (pages/s, QEMU's own
                            measure at each dirty-bitmap sync)
  bench-rounds              ram.dirty-sync-count at the end
  bench-start-to-resume-ms  the migrate command to the destination's RESUME
                            event (needs DST_QMP): the whole migration as
                            the guest sees it, measured like vmfs-vmm's
                            total_time_ms (which ends at the destination's
                            acknowledgement); QEMU's own "total-time" ends
                            when the source has written the last byte into
                            its socket, with up to the socket buffers and
                            the link's queue still in flight
  bench-dst-crashed         1 when the destination is not running a
                            second after it resumed (start it with
                            -action reboot=shutdown,shutdown=pause: a guest
                            crash then pauses it rather than ending it)
Used by bench-migrate.sh for the QEMU baseline."""
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
    events = []

    def cmd(name, **args):
        f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" in r:
                events.append(r)
            elif "return" in r or "error" in r:
                return r

    cmd("qmp_capabilities")
    return cmd, events


def last_event(events, name):
    t = [e["timestamp"] for e in events if e["event"] == name]
    return t[-1]["seconds"] + t[-1]["microseconds"] / 1e6 if t else None


def main():
    cmd, src_events = qmp(sys.argv[1])
    dst = qmp(sys.argv[4]) if len(sys.argv) > 4 else None
    auto_converge = len(sys.argv) > 5 and sys.argv[5] == "1"
    cmd("migrate-set-capabilities", capabilities=[
        {"capability": "auto-converge", "state": auto_converge}])
    cmd("migrate-set-parameters", **{"downtime-limit": int(sys.argv[3]),
                                     "max-bandwidth": 10 * 1024 ** 3})
    t_start = time.time()	# the host clock, as QMP's event timestamps
    r = cmd("migrate", uri="tcp:127.0.0.1:" + sys.argv[2])
    if "error" in r:
        print(json.dumps(r, separators=(",", ":")))
        return 1
    rates = []
    for _ in range(6000):
        r = cmd("query-migrate")["return"]
        rate = r.get("ram", {}).get("dirty-pages-rate", 0)
        if r.get("status") == "active" and rate:
            rates.append(rate)
        if r.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    if rates:
        r["bench-dirty-pages-rate"] = sorted(rates)[len(rates) // 2]
    r["bench-rounds"] = r.get("ram", {}).get("dirty-sync-count", 0)
    if dst and r.get("status") == "completed":
        dcmd, dst_events = dst
        try:
            for _ in range(300):
                if dcmd("query-status")["return"].get("running"):
                    break
                time.sleep(0.1)
            time.sleep(1)
            r["bench-dst-crashed"] = 0 if dcmd("query-status")["return"].get("running") else 1
        except (OSError, ValueError):
            r["bench-dst-crashed"] = 1	# the destination QEMU went away
        cmd("query-status")		# collects the source's STOP event
        stop, resume = last_event(src_events, "STOP"), last_event(dst_events, "RESUME")
        if stop is not None and resume is not None:
            r["bench-stop-to-resume-ms"] = round((resume - stop) * 1000, 1)
        if resume is not None:
            r["bench-start-to-resume-ms"] = round((resume - t_start) * 1000, 1)
    print(json.dumps(r, separators=(",", ":")))
    return 0 if r.get("status") == "completed" else 1


sys.exit(main())
