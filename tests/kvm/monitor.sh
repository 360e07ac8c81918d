#!/usr/bin/env bash
# KVM integration tests of the monitor (QMP and HMP over unix sockets) with
# the project's test guest (test=tick prints "tick N" continuously, so
# progress is visible in its serial file). One line per test:
#   PASS name | FAIL name: reason | SKIP name: reason
# Usage: tests/kvm/monitor.sh [test...]      (default: all tests)
# Environment: KVMBOX (default build/kvmbox-san), KVM_TEST_TIMEOUT (s, 30),
#              KVM_TEST_KEEP=1 keeps the scratch dir, BACKLOG_KIB (8192) the
#              unread replies of qmp-slow-client-large-reply. Needs python3 (the QMP
#              and HMP clients); wire-compat needs qemu-system-x86_64.
set -u

cd "$(dirname "$0")/../.." || exit 1
TMO=${KVM_TEST_TIMEOUT:-30}
ALL_TESTS="qmp-basic qmp-stop-cont qmp-reset qmp-quit qmp-bad-input qmp-two-clients"
ALL_TESTS+=" qmp-slow-client qmp-reconnect qmp-powerdown qmp-wire-compat hmp-basic"
ALL_TESTS+=" qmp-powerdown-guest hmp-powerdown start-paused no-shutdown qmp-slow-client-large-reply"
ALL_TESTS+=" qmp-pci-block"

# shellcheck source=tests/kvm/lib.sh
. tests/kvm/lib.sh
kvm_setup montest "python3 is not installed (the QMP/HMP test client)"

# --- the client: python3, one scenario per test -------------------------------
cat >"$SCRATCH/mon.py" <<'EOF'
import json, os, socket, subprocess, sys, time

TMO = float(os.environ.get("TMO", "30"))

class Fail(Exception):
    pass

def connect(path):
    end = time.time() + TMO
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.time() > end:
                raise Fail("cannot connect to " + path)
            time.sleep(0.05)

class QMP:
    def __init__(self, path, negotiate=True):
        self.s = connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if "QMP" not in self.greeting:
            raise Fail("no greeting: %r" % self.greeting)
        if negotiate:
            r = self.cmd("qmp_capabilities")
            if r != {"return": {}}:
                raise Fail("qmp_capabilities: %r" % r)
    def recv(self, timeout=None):
        end = time.time() + (timeout or TMO)
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                raise Fail("no reply within %.0fs" % (timeout or TMO))
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise Fail("connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)
    def send_raw(self, data):
        self.s.sendall(data)
    def reply(self):
        while True:
            m = self.recv()
            if "event" in m:
                self.events.append(m)
            else:
                return m
    def cmd(self, name, args=None, **extra):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.reply()
    def event(self, name, timeout=None):
        end = time.time() + (timeout or TMO)
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            m = self.recv(max(0.01, end - time.time()))
            if "event" in m:
                self.events.append(m)

def ticks(serial):
    try:
        with open(serial, "rb") as f:
            return f.read().count(b"tick ")
    except OSError:
        return 0

def wait_ticks(serial, n):
    end = time.time() + TMO
    while ticks(serial) < n:
        if time.time() > end:
            raise Fail("guest made no progress (%d ticks)" % ticks(serial))
        time.sleep(0.05)

def check(cond, what):
    if not cond:
        raise Fail(what)

def check_event_shape(e, name, data_keys=None):
    check(e["event"] == name, "event %r" % e)
    ts = e.get("timestamp", {})
    check(isinstance(ts.get("seconds"), int) and isinstance(ts.get("microseconds"), int),
          "timestamp %r" % e)
    if data_keys is None:
        check("data" not in e, "unexpected data in %r" % e)
    else:
        check(sorted(e.get("data", {})) == sorted(data_keys), "data of %r" % e)

def t_basic(sock, serial):
    q = QMP(sock, negotiate=False)
    v = q.greeting["QMP"]["version"]["qemu"]
    check(v == {"major": 7, "minor": 2, "micro": 0}, "greeting version %r" % v)
    check(q.greeting["QMP"]["capabilities"] == ["oob"], "capabilities")
    r = q.cmd("query-status")
    check(r.get("error", {}).get("class") == "CommandNotFound", "before negotiation: %r" % r)
    check(q.cmd("qmp_capabilities", id="x") == {"return": {}, "id": "x"}, "negotiation")
    r = q.cmd("query-status")
    check(r == {"return": {"status": "running", "singlestep": False, "running": True}},
          "query-status %r" % r)
    check(q.cmd("query-kvm") == {"return": {"enabled": True, "present": True}}, "query-kvm")
    r = q.cmd("query-cpus-fast")["return"]
    check(len(r) == 2 and all(c["thread-id"] > 0 for c in r), "query-cpus-fast %r" % r)
    for c in r:
        try:
            comm = open("/proc/%d/comm" % c["thread-id"]).read().strip()
        except OSError:
            comm = ""
        check(comm == "vcpu%d" % c["cpu-index"],
              "thread-id %d is not vCPU thread %d (%r)" % (c["thread-id"], c["cpu-index"], comm))
    check(q.cmd("query-name") == {"return": {"name": "montest"}}, "query-name")
    r = q.cmd("query-uuid")
    check(r == {"return": {"UUID": "550e8400-e29b-41d4-a716-446655440000"}}, "query-uuid %r" % r)
    r = q.cmd("query-chardev")["return"]
    check(any(c["label"] == "serial0" for c in r), "query-chardev %r" % r)
    r = q.cmd("human-monitor-command", {"command-line": "info status"})
    check(r == {"return": "VM status: running\r\n"}, "hmc %r" % r)
    r = q.cmd("set_link", {"name": "nic0", "up": False})
    check(r == {"error": {"class": "DeviceNotFound", "desc": "Device 'nic0' not found"}},
          "set_link %r" % r)

def t_stop_cont(sock, serial):
    q = QMP(sock)
    wait_ticks(serial, 3)
    r = q.cmd("stop")
    check(r == {"return": {}}, "stop %r" % r)
    check_event_shape(q.event("STOP"), "STOP")
    st = q.cmd("query-status")["return"]
    check(st["status"] == "paused" and st["running"] is False, "status %r" % st)
    time.sleep(0.3)
    n = ticks(serial)
    time.sleep(0.7)
    check(ticks(serial) == n, "guest still ticking while stopped (%d -> %d)" % (n, ticks(serial)))
    check(q.cmd("cont") == {"return": {}}, "cont")
    check_event_shape(q.event("RESUME"), "RESUME")
    wait_ticks(serial, n + 3)
    check(q.cmd("query-status")["return"]["status"] == "running", "running again")

def t_reset(sock, serial):
    q = QMP(sock)
    wait_ticks(serial, 3)
    check(q.cmd("system_reset") == {"return": {}}, "system_reset")
    e = q.event("RESET")
    check_event_shape(e, "RESET", ["guest", "reason"])
    check(e["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, "RESET %r" % e)
    end = time.time() + TMO
    while open(serial, "rb").read().count(b"kvmbox-testguest: test=tick") < 2:
        check(time.time() < end, "the guest did not boot again")
        time.sleep(0.05)

def t_quit(sock, serial):
    q = QMP(sock)
    check(q.cmd("quit") == {"return": {}}, "quit")
    e = q.event("SHUTDOWN")
    check(e["data"] == {"guest": False, "reason": "host-qmp-quit"}, "SHUTDOWN %r" % e)

def t_bad_input(sock, serial):
    q = QMP(sock)
    def err():
        r = q.reply()
        check(r.get("error", {}).get("class") == "GenericError", "want GenericError: %r" % r)
        return r
    q.send_raw(b"garbage\n")
    check(err()["error"]["desc"].startswith("JSON parse error, "), "parse error desc")
    q.send_raw(b"[1, 2]\n"); err()
    q.send_raw(b'{"execute": "query-status"}}\n')
    check("return" in q.reply(), "message before the stray brace")
    err()
    q.send_raw(b'{"execute": "query-')            # truncated, then completed
    time.sleep(0.2)
    q.send_raw(b'name"}')
    check("return" in q.reply(), "split message")
    q.send_raw(b'{"execute": "' + b"a" * (2 << 20) + b'"}\n')   # huge
    err()
    q.send_raw(b"[" * 100000 + b"\n")                          # deep
    err()
    q.send_raw(b"]" * 100000 + b"\n")
    # interleaved: two messages and garbage in one write, then a good one
    q.send_raw(b'{"execute":"query-kvm","id":1}\x00\xff{"execute":"query-name","id":2}')
    ids = []
    end = time.time() + 5
    while 2 not in ids and time.time() < end:
        m = q.recv()
        if "id" in m:
            ids.append(m["id"])
    check(1 in ids and 2 in ids, "interleaved replies %r" % ids)
    # drain whatever error replies remain, then the session still works
    q.send_raw(b'\n{"execute": "query-status", "id": "last"}\n')
    while True:
        m = q.reply()
        if m.get("id") == "last":
            break
    check(m["return"]["status"] == "running", "status after garbage")
    n = ticks(serial)
    wait_ticks(serial, n + 3)

def t_two_clients(sock, serial):
    a = QMP(sock)
    b = QMP(SOCK2)
    check(a.cmd("query-name", id="a")["id"] == "a", "client a")
    check(b.cmd("query-name", id="b")["id"] == "b", "client b")
    a.cmd("stop")
    a.event("STOP")
    b.event("STOP")
    b.cmd("cont")
    a.event("RESUME")
    b.event("RESUME")

def t_slow_client(sock, serial):
    # One client floods requests and never reads its replies.
    slow = connect(SOCK2)
    slow.setblocking(False)
    req = b'{"execute": "qmp_capabilities"}\n' + b'{"execute": "query-commands"}\n' * 200
    sent = 0
    end = time.time() + 3
    while time.time() < end:
        try:
            sent += slow.send(req[sent % len(req):])
        except BlockingIOError:
            time.sleep(0.05)
    q = QMP(sock)
    n = ticks(serial)
    wait_ticks(serial, n + 5)
    check(q.cmd("query-status")["return"]["status"] == "running", "other client")
    slow.close()

def t_reconnect(sock, serial):
    for i in range(3):
        q = QMP(sock)
        check(q.cmd("query-status")["return"]["running"], "session %d" % i)
        q.s.close()
        time.sleep(0.1)

def t_powerdown(sock, serial):
    q = QMP(sock)
    check(q.cmd("system_powerdown") == {"return": {}}, "system_powerdown")
    check_event_shape(q.event("POWERDOWN"), "POWERDOWN")

HMP_PROMPT = b"(qemu) "

class HMP:
    def __init__(self, path):
        self.s = connect(path)
        self.buf = b""
        banner = self.until_prompt()
        check(b"monitor - type 'help' for more information" in banner, "banner %r" % banner)
    def until_prompt(self):
        end = time.time() + TMO
        while not self.buf.endswith(HMP_PROMPT):
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                raise Fail("no prompt; got %r" % self.buf[-200:])
            if not d:
                raise Fail("connection closed")
            self.buf += d
        out, self.buf = self.buf[:-len(HMP_PROMPT)], b""
        return out
    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        out = self.until_prompt().decode(errors="replace")
        # drop the echo of the line
        return out.split("\r\n", 1)[1] if "\r\n" in out else out

def t_hmp(sock, serial):
    h = HMP(sock)
    check(h.cmd("info status") == "VM status: running\r\n", "info status")
    check(h.cmd("info version") == "7.2.0kvmbox 0.1.0\r\n", "info version")
    out = h.cmd("info cpus")
    check(out.startswith("* CPU #0: thread_id=") and "  CPU #1: thread_id=" in out, out)
    out = h.cmd("info registers")
    check(out.startswith("\r\nCPU#0\r\nRAX=") and "RIP=" in out and "XMM15=" in out, out)
    out = h.cmd("x/4xw $rip")
    check(len(out.split()) == 5 and out.split()[1].startswith("0x"), "x/4xw: " + out)
    out = h.cmd("xp/2xg 0x100000")
    check(out.startswith("0000000000100000: 0x"), "xp: " + out)
    check(h.cmd("stop") == "", "stop")
    check(h.cmd("info status") == "VM status: paused\r\n", "paused")
    n = ticks(serial)
    time.sleep(0.5)
    check(ticks(serial) == n, "ticking while stopped")
    check(h.cmd("cont") == "", "cont")
    wait_ticks(serial, n + 3)
    check(h.cmd("foo") == "unknown command: 'foo'\r\n", "unknown command")


# --- lifecycle with an ACPI-aware guest, -S, -no-shutdown ----------------------
def serial_text(serial):
    try:
        with open(serial, "rb") as f:
            return f.read()
    except OSError:
        return b""

def wait_serial(serial, text, count=1):
    end = time.time() + TMO
    while serial_text(serial).count(text) < count:
        if time.time() > end:
            raise Fail("no %r (x%d) on the serial port within %.0fs; last: %r"
                       % (text, count, TMO, serial_text(serial)[-160:]))
        time.sleep(0.05)
    check(b"FAIL" not in serial_text(serial), "guest: %r" % serial_text(serial)[-160:])

def events_until(q, name):
    """Every event (queued ones first) up to and including the next NAME."""
    out = []
    end = time.time() + TMO
    while True:
        while q.events:
            e = q.events.pop(0)
            out.append(e)
            if e["event"] == name:
                return out
        m = q.recv(max(0.01, end - time.time()))
        if "event" in m:
            q.events.append(m)

def wait_closed(s, what):
    """kvmbox closes the monitor connection when it exits."""
    end = time.time() + TMO
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            if not s.recv(65536):
                return
        except socket.timeout:
            break
        except ConnectionResetError:
            return
    raise Fail("%s: kvmbox did not close the connection (still running?)" % what)

STATUS_SHUTDOWN = {"return": {"status": "shutdown", "singlestep": False, "running": False}}
STATUS_PRELAUNCH = {"return": {"status": "prelaunch", "singlestep": False, "running": False}}
STATUS_RUNNING = {"return": {"status": "running", "singlestep": False, "running": True}}
# qemu-system-x86_64 7.2 on `cont` in state shutdown (-no-shutdown):
NEEDS_RESET = "Resetting the Virtual Machine is required"

def t_powerdown_guest(sock, serial):
    q = QMP(sock)
    wait_serial(serial, b"powerbutton: armed")
    check(q.cmd("system_powerdown") == {"return": {}}, "system_powerdown")
    evs = events_until(q, "SHUTDOWN")
    names = [e["event"] for e in evs]
    check(names == ["POWERDOWN", "SHUTDOWN"], "events %r, want POWERDOWN, SHUTDOWN" % names)
    check_event_shape(evs[0], "POWERDOWN")
    check_event_shape(evs[1], "SHUTDOWN", ["guest", "reason"])
    check(evs[1]["data"] == {"guest": True, "reason": "guest-shutdown"}, "SHUTDOWN %r" % evs[1])
    wait_serial(serial, b"powerbutton: pressed")
    wait_closed(q.s, "after the guest powered off")

def t_hmp_powerdown(sock, serial):
    h = HMP(sock)
    wait_serial(serial, b"powerbutton: armed")
    check(h.cmd("system_powerdown") == "", "system_powerdown")
    wait_serial(serial, b"powerbutton: pressed")
    wait_closed(h.s, "after the guest powered off")

def t_start_paused(sock, serial):
    q = QMP(sock)
    r = q.cmd("query-status")
    check(r == STATUS_PRELAUNCH, "query-status with -S: %r" % r)
    r = q.cmd("human-monitor-command", {"command-line": "info status"})
    check(r == {"return": "VM status: paused (prelaunch)\r\n"}, "info status with -S: %r" % r)
    time.sleep(1)
    check(serial_text(serial) == b"", "the guest ran before cont: %r" % serial_text(serial)[:80])
    check(q.cmd("stop") == {"return": {}}, "stop in prelaunch")
    check(q.cmd("query-status") == STATUS_PRELAUNCH, "stop changed prelaunch")
    check(not [e for e in q.events if e["event"] == "STOP"], "STOP event in prelaunch")
    check(q.cmd("cont") == {"return": {}}, "cont")
    check_event_shape(q.event("RESUME"), "RESUME")
    wait_ticks(serial, 3)
    r = q.cmd("query-status")
    check(r == STATUS_RUNNING, "after cont: %r" % r)

def t_no_shutdown(sock, serial):
    # -S so that no event can be missed: the hello guest powers off at once.
    q = QMP(sock)
    check(q.cmd("cont") == {"return": {}}, "cont")
    evs = events_until(q, "STOP")
    names = [e["event"] for e in evs]
    check(names == ["RESUME", "SHUTDOWN", "STOP"], "events %r, want RESUME, SHUTDOWN, STOP" % names)
    check(evs[1]["data"] == {"guest": True, "reason": "guest-shutdown"}, "SHUTDOWN %r" % evs[1])
    wait_serial(serial, b"hello: ok")
    time.sleep(0.5)
    r = q.cmd("query-status")
    check(r == STATUS_SHUTDOWN, "query-status after the guest powered off: %r" % r)
    r = q.cmd("human-monitor-command", {"command-line": "info status"})
    check(r == {"return": "VM status: paused (shutdown)\r\n"}, "info status: %r" % r)
    r = q.cmd("cont")
    check(r == {"error": {"class": "GenericError", "desc": NEEDS_RESET}}, "cont in shutdown: %r" % r)
    r = q.cmd("human-monitor-command", {"command-line": "cont"})
    check(r == {"return": "Error: %s\r\n" % NEEDS_RESET}, "HMP cont in shutdown: %r" % r)
    check(q.cmd("query-status") == STATUS_SHUTDOWN, "cont changed state shutdown")
    check(q.cmd("stop") == {"return": {}}, "stop in shutdown")
    check(not q.events, "events after refused cont/stop: %r" % q.events)
    check(q.cmd("system_reset") == {"return": {}}, "system_reset")
    e = q.event("RESET")
    check(e["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, "RESET %r" % e)
    r = q.cmd("query-status")
    check(r == STATUS_PRELAUNCH, "after system_reset in shutdown (QEMU 7.2: prelaunch): %r" % r)
    check(serial_text(serial).count(b"kvmbox-testguest: test=hello") == 1, "booted before cont")
    check(q.cmd("cont") == {"return": {}}, "cont after system_reset")
    evs = events_until(q, "STOP")
    names = [e["event"] for e in evs]
    check(names == ["RESUME", "SHUTDOWN", "STOP"], "second boot: events %r" % names)
    wait_serial(serial, b"hello: ok", 2)
    check(serial_text(serial).count(b"kvmbox-testguest: test=hello") == 2, "second boot")
    check(q.cmd("query-status") == STATUS_SHUTDOWN, "second power-off")
    check(q.cmd("quit") == {"return": {}}, "quit")
    e = q.event("SHUTDOWN")
    check(e["data"] == {"guest": False, "reason": "host-qmp-quit"}, "SHUTDOWN %r" % e)
    wait_closed(q.s, "after quit")

def slow_line(s, pause_each=0.0, pause_every=0, pause=0.0):
    """Read one line one byte at a time (recv(1)), pausing after each of
    the first 32 bytes and then every pause_every bytes."""
    data = bytearray()
    end = time.time() + TMO
    while not data.endswith(b"\n"):
        check(time.time() < end, "slow reader: no complete line within %.0fs (%d bytes)"
              % (TMO, len(data)))
        s.settimeout(max(0.01, end - time.time()))
        try:
            d = s.recv(1)
        except socket.timeout:
            continue
        if not d:
            raise Fail("slow reader: connection closed after %d bytes" % len(data))
        data += d
        if pause_each and len(data) <= 32:
            time.sleep(pause_each)
        elif pause_every and len(data) % pause_every == 0:
            time.sleep(pause)
    return parse_line(data)

def parse_line(data):
    try:
        return json.loads(bytes(data))
    except ValueError as e:
        raise Fail("slow reader: invalid JSON (%s) in %d bytes: %r ... %r"
                   % (e, len(data), bytes(data[:60]), bytes(data[-60:])))

def t_slow_large_reply(sock, serial):
    import threading
    q = QMP(sock)
    ref = q.cmd("query-commands")
    check(isinstance(ref.get("return"), list) and len(ref["return"]) > 10, "query-commands")
    size = len(json.dumps(ref))
    s = connect(SOCK2)
    g = slow_line(s, pause_each=0.02)
    check("QMP" in g, "slow greeting %r" % g)
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    check(slow_line(s) == {"return": {}}, "slow qmp_capabilities")
    # 1: one large reply, read a byte at a time: the first bytes slowly,
    # then a pause every 256 bytes.
    s.sendall(b'{"execute": "query-commands", "id": "big"}\n')
    time.sleep(0.5)
    r = slow_line(s, pause_each=0.05, pause_every=256, pause=0.01)
    check(r.get("id") == "big" and r.get("return") == ref["return"],
          "slow large reply differs from the fast client's (%d bytes)" % len(json.dumps(r)))
    # 2: a backlog well beyond the socket buffers (n replies, BACKLOG_KIB,
    # default 8 MiB, not read for 2 s; QEMU loses none: it stops reading
    # requests while replies wait), while the VM and another client carry on; then the
    # first replies a byte at a time, the rest in small reads: every reply
    # complete, valid and in order.
    n = max(50, (int(os.environ.get("BACKLOG_KIB", "8192")) << 10) // size)
    req = b"".join(b'{"execute": "query-commands", "id": %d}\n' % i for i in range(n))
    sender = threading.Thread(target=lambda: s.sendall(req), daemon=True)
    sender.start()
    time.sleep(2)
    t0 = ticks(serial)
    wait_ticks(serial, t0 + 3)
    r = q.cmd("query-status", id="other")
    check(r.get("return", {}).get("status") == "running", "other client while backlogged: %r" % r)
    buf = b""
    end = time.time() + TMO
    for i in range(n):
        if i < 3:
            r = slow_line(s, pause_every=4096, pause=0.01)
        else:
            while b"\n" not in buf:
                check(time.time() < end, "backlog: reply %d of %d not within %.0fs" % (i, n, TMO))
                s.settimeout(max(0.01, end - time.time()))
                try:
                    d = s.recv(512)
                except socket.timeout:
                    continue
                if not d:
                    raise Fail("backlog: connection closed at reply %d of %d" % (i, n))
                buf += d
            line, buf = buf.split(b"\n", 1)
            r = parse_line(line)
        check(r.get("id") == i, "reply %d: id %r (replies lost or reordered?)" % (i, r.get("id")))
        check(r.get("return") == ref["return"], "reply %d differs" % i)
    check(buf == b"", "trailing bytes after the replies: %r" % buf[:80])
    sender.join(TMO)
    check(not sender.is_alive(), "the requests were never all accepted")
    s.close()
    check(q.cmd("query-status")["return"]["status"] == "running", "after the slow client")

# --- query-pci, query-block, query-blockstats and their HMP forms --------------
# kvmbox runs with -S -no-shutdown: d0 (if=none, anonymous virtio-blk-pci)
# is the disk test=virtio-blk writes and reads, d1 (id=vd1) a read-only
# writethrough drive, then virtio-rng-pci,id=rng0. argv[4]/[5]: the images.
def hmc(q, line):
    r = q.cmd("human-monitor-command", {"command-line": line})
    check("return" in r, "%s: %r" % (line, r))
    return r["return"]

def pci_find(devs, vendor, device):
    for d in devs:
        if d["id"]["vendor"] == vendor and d["id"]["device"] == device:
            return d
    raise Fail("no PCI device %04x:%04x in %r" % (vendor, device, devs))

def t_pci_block(sock, serial):
    img0, img1 = sys.argv[4], sys.argv[5]
    q = QMP(sock)
    r = q.cmd("query-pci")["return"]
    check(len(r) == 1 and r[0]["bus"] == 0, "query-pci: one bus 0: %r" % r)
    devs = r[0]["devices"]
    check([d["slot"] for d in devs] == [0, 1, 2, 3], "slots %r" % [d["slot"] for d in devs])
    host = devs[0]
    check(host["class_info"] == {"class": 0x0600, "desc": "Host bridge"}, "host %r" % host)
    check("irq" not in host and host["irq_pin"] == 0 and host["regions"] == [], "host %r" % host)
    blks = [d for d in devs if d["id"]["vendor"] == 0x1af4 and d["id"]["device"] == 0x1001]
    check(len(blks) == 2, "two virtio-blk functions: %r" % devs)
    rng = pci_find(devs, 0x1af4, 0x1005)
    check([d["qdev_id"] for d in devs] == ["", "", "vd1", "rng0"], "qdev_id %r" % devs)
    for d in devs[1:]:
        check(d["bus"] == 0 and d["function"] == 0, "address %r" % d)
        check(d["irq_pin"] == 1 and isinstance(d["irq"], int) and 16 <= d["irq"] < 24,
              "INTx %r" % d)
        check(d["id"]["subsystem-vendor"] == 0x1af4, "subsystem %r" % d["id"])
        bars = {x["bar"]: x for x in d["regions"]}
        check(all(x["size"] > 0 and x["address"] > 0 and x["address"] % x["size"] == 0
                  for x in d["regions"]), "BARs placed and aligned: %r" % d["regions"])
        check(all(x["type"] == "io" and "prefetch" not in x or
                  x["type"] == "memory" and isinstance(x["mem_type_64"], bool)
                  and isinstance(x["prefetch"], bool) for x in d["regions"]),
              "BAR shapes %r" % d["regions"])
        check(any(x["type"] == "memory" for x in bars.values()), "a memory BAR: %r" % bars)
    check(blks[0]["class_info"] == {"class": 0x0100, "desc": "SCSI controller"},
          "virtio-blk class %r" % blks[0]["class_info"])
    check(rng["class_info"] == {"class": 0x00ff}, "virtio-rng class %r" % rng["class_info"])

    out = hmc(q, "info pci")
    check(out.startswith("  Bus  0, device   0, function 0:\r\n    Host bridge: PCI device "
                         "1b36:0008\r\n      PCI subsystem 1b36:1100\r\n      id \"\"\r\n"
                         "  Bus  0, device   1, function 0:\r\n    SCSI controller: PCI device "
                         "1af4:1001\r\n"), "info pci:\n" + out)
    check("    Class 0255: PCI device 1af4:1005\r\n" in out and 'id "rng0"' in out
          and "      IRQ %d, pin A\r\n" % rng["irq"] in out, "info pci:\n" + out)
    io = [x for x in blks[0]["regions"] if x["type"] == "io"][0]
    check("      BAR%d: I/O at 0x%04x [0x%04x].\r\n" % (io["bar"], io["address"],
          io["address"] + io["size"] - 1) in out, "info pci I/O BAR:\n" + out)

    r = q.cmd("query-block")["return"]
    check([b["device"] for b in r] == ["d0", "d1"], "query-block devices %r" % r)
    b0, b1 = r
    check(b0["qdev"] == "/machine/peripheral-anon/device[0]/virtio-backend", "qdev %r" % b0)
    check(b1["qdev"] == "/machine/peripheral/vd1/virtio-backend", "qdev %r" % b1)
    for b in r:
        check(b["type"] == "unknown" and b["locked"] is False and b["removable"] is False
              and b["io-status"] == "ok", "BlockInfo %r" % b)
    i0, i1 = b0["inserted"], b1["inserted"]
    check(i0["file"] == img0 and i0["drv"] == "raw" and i0["ro"] is False
          and i0["backing_file_depth"] == 0 and i0["encrypted"] is False
          and i0["detect_zeroes"] == "off" and i0["bps"] == 0, "inserted %r" % i0)
    check(i0["image"]["filename"] == img0 and i0["image"]["format"] == "raw"
          and i0["image"]["virtual-size"] == 1048576, "image %r" % i0["image"])
    check(i0["cache"] == {"writeback": True, "direct": False, "no-flush": False},
          "cache %r" % i0["cache"])
    check(i1["ro"] is True and i1["file"] == img1, "read-only drive %r" % i1)
    check(i1["cache"] == {"writeback": False, "direct": False, "no-flush": False},
          "writethrough cache %r" % i1["cache"])
    out = hmc(q, "info block")
    want = ("d0 (%s): %s (raw)\r\n    Attached to:      /machine/peripheral-anon/device[0]/"
            "virtio-backend\r\n    Cache mode:       writeback\r\n\r\n"
            "d1 (%s): %s (raw, read-only)\r\n    Attached to:      /machine/peripheral/vd1/"
            "virtio-backend\r\n    Cache mode:       writethrough\r\n"
            % (i0["node-name"], img0, i1["node-name"], img1))
    check(out == want, "info block:\n%r\nwant\n%r" % (out, want))
    out = hmc(q, "info block d1")
    check(out.startswith("d1 (") and "d0" not in out, "info block d1: %r" % out)
    check(hmc(q, "info block nosuch") == "", "info block nosuch")

    r = q.cmd("query-blockstats")["return"]
    check([b["device"] for b in r] == ["d0", "d1"], "query-blockstats %r" % r)
    s0 = r[0]["stats"]
    check(r[0]["qdev"] == b0["qdev"] and r[0]["node-name"] == i0["node-name"], "ids %r" % r[0])
    check(all(v == 0 for k, v in s0.items() if isinstance(v, int) and not isinstance(v, bool)),
          "counters before the guest ran: %r" % s0)
    check("idle_time_ns" not in s0, "idle_time_ns before any I/O: %r" % s0)
    check(s0["account_invalid"] is True and s0["account_failed"] is True
          and s0["timed_stats"] == [], "stats %r" % s0)
    check(r[0]["parent"]["driver-specific"]["driver"] == "file", "parent %r" % r[0]["parent"])
    check(hmc(q, "info blockstats").startswith(
        "d0: rd_bytes=0 wr_bytes=0 rd_operations=0 wr_operations=0 flush_operations=0 "
        "wr_total_time_ns=0 rd_total_time_ns=0 flush_total_time_ns=0 rd_merged=0 wr_merged=0 "
        "idle_time_ns=0\r\nd1: "), "info blockstats before")

    check(q.cmd("cont") == {"return": {}}, "cont")
    q.event("SHUTDOWN")         # the guest powers off after its test
    wait_serial(serial, b"virtio-blk: ok")
    r = q.cmd("query-blockstats")["return"]
    s0, s1 = r[0]["stats"], r[1]["stats"]
    # sectors 0..63 written (several requests), flushed, read back
    check(s0["wr_operations"] >= 4 and s0["wr_bytes"] >= 32768, "writes %r" % s0)
    check(s0["rd_operations"] >= 1 and s0["rd_bytes"] >= 32768, "reads %r" % s0)
    check(s0["flush_operations"] >= 1, "flushes %r" % s0)
    check(s0["wr_highest_offset"] >= 32768, "wr_highest_offset %r" % s0)
    check(s0["rd_total_time_ns"] > 0 and s0["wr_total_time_ns"] > 0, "latency sums %r" % s0)
    check(isinstance(s0.get("idle_time_ns"), int) and s0["idle_time_ns"] >= 0, "idle %r" % s0)
    check(s0["failed_wr_operations"] == 0 and s0["failed_rd_operations"] == 0, "failed %r" % s0)
    check(s1["rd_operations"] == 0 and s1["wr_operations"] == 0, "d1 untouched %r" % s1)
    out = hmc(q, "info blockstats")
    check(out.startswith("d0: rd_bytes=%d wr_bytes=%d rd_operations=%d wr_operations=%d "
                         "flush_operations=%d " % (s0["rd_bytes"], s0["wr_bytes"],
                         s0["rd_operations"], s0["wr_operations"], s0["flush_operations"])),
          "info blockstats after I/O: %r" % out)
    check(q.cmd("quit") == {"return": {}}, "quit")

# --- wire compatibility: same requests to both, compare key sets and types ---
def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__

def diff(a, b, path="$"):
    sa, sb = shape(a), shape(b)
    if isinstance(sa, dict) and isinstance(sb, dict):
        out = []
        if sorted(sa) != sorted(sb):
            out.append("%s: keys %s vs %s" % (path, sorted(sa), sorted(sb)))
        for k in set(sa) & set(sb):
            out += diff(a[k], b[k], path + "." + k)
        return out
    if isinstance(sa, list) and isinstance(sb, list):
        if sa and sb:
            return diff(a[0], b[0], path + "[0]")
        return []
    return [] if sa == sb else ["%s: %s vs %s" % (path, sa, sb)]

WIRE = ["query-status", "query-version", "query-name", "query-kvm", "query-uuid",
        "query-cpus-fast", "query-block", "query-blockstats", "query-chardev", "query-pci",
        "query-commands", "no-such-command"]

def wire_session(sock):
    q = QMP(sock, negotiate=False)
    out = {"greeting": q.greeting, "pre": q.cmd("query-status")}
    out["qmp_capabilities"] = q.cmd("qmp_capabilities", id=[1, {"a": "b"}])
    for c in WIRE:
        out[c] = q.cmd(c, id=c)
    out["badarg"] = q.cmd("query-status", {"x": 1})
    out["set_link"] = q.cmd("set_link", {"name": "nic9", "up": True})
    out["garbage"] = (q.send_raw(b"garbage\n"), q.reply())[1]
    out["hmc"] = q.cmd("human-monitor-command", {"command-line": "info status"})
    for c in ("info block", "info blockstats"):
        out[c] = q.cmd("human-monitor-command", {"command-line": c})
    out["stop"] = q.cmd("stop")
    out["STOP"] = q.event("STOP")
    out["cont"] = q.cmd("cont")
    out["RESUME"] = q.event("RESUME")
    out["system_reset"] = q.cmd("system_reset")
    out["RESET"] = q.event("RESET")
    out["quit"] = q.cmd("quit")
    out["SHUTDOWN"] = q.event("SHUTDOWN")
    return out

def t_wire(sock, serial):
    qsock = sys.argv[4]
    ours = wire_session(sock)
    ref = wire_session(qsock)
    problems = []
    for k in ours:
        if k == "query-pci":    # different chipsets: compare the devices both have
            problems += pci_diff(ours[k]["return"], ref[k]["return"])
            continue
        if k == "query-commands":   # different command sets; compare entry shape
            continue
        if k in ("info block", "info blockstats"):  # same text, but for paths and numbers
            a, b = (norm_text(x[k].get("return", "")) for x in (ours, ref))
            if a != b:
                problems.append("%s: %r vs %r" % (k, a, b))
            continue
        problems += [k + " " + p for p in diff(ours[k], ref[k])]
    for k in ("query-block", "query-blockstats"):
        check(len(ours[k]["return"]) == 1, k + ": one drive: %r" % ours[k])
        a, b = ours[k]["return"][0], ref[k]["return"][0]
        if (a["device"], a["qdev"]) != (b["device"], b["qdev"]):
            problems.append("%s: device/qdev %r vs %r" % (k, (a["device"], a["qdev"]),
                                                         (b["device"], b["qdev"])))
    check(not problems, "; ".join(problems))

def norm_text(t):
    import re
    t = re.sub(r"/\S*/(kvmbox|ref)\.img", "IMG", t)
    t = re.sub(r"#block\d+", "#blockN", t)
    return re.sub(r"\d+", "N", t)

def pci_diff(ours, ref):
    """One bus on both; every function kvmbox has (by vendor:device; the
    host bridges differ: i440FX vs gpex ids) against QEMU's, BARs by index."""
    out = []
    if len(ours) != 1 or len(ref) != 1:
        return ["query-pci: %d vs %d buses" % (len(ours), len(ref))]
    out += ["query-pci " + p for p in diff(dict(ours[0], devices=[]), dict(ref[0], devices=[]))]
    byid = {(d["id"]["vendor"], d["id"]["device"]): d for d in ref[0]["devices"]}
    for d in ours[0]["devices"]:
        k = (d["id"]["vendor"], d["id"]["device"])
        r = byid.get(k) or (ref[0]["devices"][0] if d["slot"] == 0 else None)
        where = "query-pci %04x:%04x" % k
        if r is None:
            out.append(where + ": not in QEMU's list")
            continue
        out += [where + " " + p for p in diff(dict(d, regions=[]), dict(r, regions=[]))]
        if d["class_info"] != r["class_info"] or d["qdev_id"] != r["qdev_id"] \
                or d["irq_pin"] != r["irq_pin"]:
            out.append(where + ": class/qdev_id/pin %r vs %r" % (
                (d["class_info"], d["qdev_id"], d["irq_pin"]),
                (r["class_info"], r["qdev_id"], r["irq_pin"])))
        rb = {x["bar"]: x for x in r["regions"]}
        if sorted(x["bar"] for x in d["regions"]) != sorted(rb):
            out.append(where + ": BARs %r vs %r" % (d["regions"], r["regions"]))
            continue
        for x in d["regions"]:
            y = rb[x["bar"]]
            out += [where + " BAR%d " % x["bar"] + p for p in diff(x, y)]
            if (x["type"], x["size"], x.get("prefetch"), x.get("mem_type_64")) != \
                    (y["type"], y["size"], y.get("prefetch"), y.get("mem_type_64")):
                out.append(where + " BAR%d: %r vs %r" % (x["bar"], x, y))
    return out

TESTS = {"qmp-basic": t_basic, "qmp-stop-cont": t_stop_cont, "qmp-reset": t_reset,
         "qmp-quit": t_quit, "qmp-bad-input": t_bad_input, "qmp-two-clients": t_two_clients,
         "qmp-slow-client": t_slow_client, "qmp-reconnect": t_reconnect,
         "qmp-powerdown": t_powerdown, "qmp-wire-compat": t_wire, "hmp-basic": t_hmp,
         "qmp-powerdown-guest": t_powerdown_guest, "hmp-powerdown": t_hmp_powerdown,
         "start-paused": t_start_paused, "no-shutdown": t_no_shutdown,
         "qmp-slow-client-large-reply": t_slow_large_reply, "qmp-pci-block": t_pci_block}

if __name__ == "__main__":
    name, sock, serial = sys.argv[1], sys.argv[2], sys.argv[3]
    SOCK2 = sock + "2"
    try:
        TESTS[name](sock, serial)
    except Fail as e:
        print(e)
        sys.exit(1)
    except Exception as e:      # a protocol surprise is a failure, not a crash
        print("%s: %s" % (type(e).__name__, e))
        sys.exit(1)
EOF

# start NAME ARGS...: kvmbox in the background with the tick guest (or
# $APPEND); QMP on $SCRATCH/NAME.qmp (and .qmp2), serial in
# $SCRATCH/NAME.serial. Sets VMPID.
start() {
    local name=$1
    shift
    rm -f "$SCRATCH/$name.qmp" "$SCRATCH/$name.qmp2"
    timeout -k 5 "$TMO" "$KVMBOX" -kernel "$GUEST" -append "${APPEND:-test=tick}" -smp 2 -m 128 \
        -name montest -uuid 550e8400-e29b-41d4-a716-446655440000 -display none \
        -serial "file:$SCRATCH/$name.serial" "$@" \
        >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err" </dev/null &
    VMPID=$!
    BGPIDS+=("$VMPID")
}

# finish NAME: stop the VM (if still running) and check it left no sanitizer
# report. Returns 1 (with FAIL printed) on a problem.
finish() {
    local name=$1 want_exit=${2:-}
    if [ -n "$want_exit" ]; then
        local i
        for i in $(seq 1 $((TMO * 10))); do kill -0 "$VMPID" 2>/dev/null || break; sleep 0.1; done
        wait "$VMPID"
        local rc=$?
        if [ "$rc" != "$want_exit" ]; then
            fail "$name" "exit status $rc, want $want_exit ($(tail -1 "$SCRATCH/$name.err"))"
            return 1
        fi
    else
        kill "$VMPID" 2>/dev/null
        wait "$VMPID" 2>/dev/null
    fi
    local san
    if san=$(sanitizer_report "$SCRATCH/$name.err"); then
        fail "$name" "sanitizer report: $san"
        return 1
    fi
    # kvmbox ended by itself: like QEMU it removes its listening sockets.
    if [ -n "$want_exit" ]; then
        local f
        for f in "$SCRATCH/$name.qmp" "$SCRATCH/$name.qmp2"; do
            if [ -e "$f" ]; then
                fail "$name" "socket $f left behind after kvmbox exited"
                return 1
            fi
        done
    fi
}

client() {
    local name=$1 test=$2
    shift 2
    TMO=$TMO python3 "$SCRATCH/mon.py" "$test" "$SCRATCH/$name.qmp" \
        "$SCRATCH/$name.serial" "$@" >"$SCRATCH/$name.client" 2>&1
}

# qmp_test NAME [WANT_EXIT [KVMBOX ARGS...]]
qmp_test() {
    local name=$1 want_exit=${2:-}
    shift $(($# < 2 ? $# : 2))
    start "$name" -qmp "unix:$SCRATCH/$name.qmp,server=on,wait=off" \
        -qmp "unix:$SCRATCH/$name.qmp2,server=on,wait=off" "$@"
    if ! client "$name" "$name"; then
        fail "$name" "$(tail -1 "$SCRATCH/$name.client")"
        finish "$name" >/dev/null
        return
    fi
    finish "$name" "$want_exit" && pass "$name"
}

# t_hmp_basic [NAME [WANT_EXIT]]
t_hmp_basic() {
    local name=${1:-hmp-basic} want_exit=${2:-}
    start "$name" -monitor "unix:$SCRATCH/$name.qmp,server=on,wait=off"
    if ! client "$name" "$name"; then
        fail "$name" "$(tail -1 "$SCRATCH/$name.client")"
        finish "$name" >/dev/null
        return
    fi
    finish "$name" "$want_exit" && pass "$name"
}

t_powerdown() {
    # The tick guest ignores the button: the command and the POWERDOWN
    # event only (qmp-powerdown-guest: a guest that powers off on it).
    qmp_test qmp-powerdown
}

t_wire_compat() {
    local name=qmp-wire-compat
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
        skip "$name" "qemu-system-x86_64 is not installed (the reference)"
        return
    fi
    rm -f "$SCRATCH/ref.qmp"
    # The same drive and virtio functions on both (query-pci/-block/-blockstats).
    head -c 1048576 /dev/zero >"$SCRATCH/ref.img"
    head -c 1048576 /dev/zero >"$SCRATCH/kvmbox.img"
    local devs=(-device virtio-blk-pci,drive=d0 -device virtio-rng-pci,id=rng0)
    timeout -k 5 "$TMO" qemu-system-x86_64 -enable-kvm -M pc -nodefaults -display none \
        -kernel "$MBGUEST" -append test=halt -smp 2 -m 128 -name montest \
        -uuid 550e8400-e29b-41d4-a716-446655440000 -serial "file:$SCRATCH/ref.serial" \
        -drive "file=$SCRATCH/ref.img,if=none,id=d0,format=raw" "${devs[@]}" \
        -qmp "unix:$SCRATCH/ref.qmp,server=on,wait=off" >"$SCRATCH/ref.out" 2>&1 </dev/null &
    local qpid=$!
    BGPIDS+=("$qpid")
    start "$name" -qmp "unix:$SCRATCH/$name.qmp,server=on,wait=off" \
        -drive "file=$SCRATCH/kvmbox.img,if=none,id=d0,format=raw" "${devs[@]}"
    if ! client "$name" "$name" "$SCRATCH/ref.qmp"; then
        fail "$name" "$(tail -1 "$SCRATCH/$name.client")"
        finish "$name" >/dev/null
        kill "$qpid" 2>/dev/null
        return
    fi
    wait "$qpid" 2>/dev/null
    finish "$name" 0 && pass "$name"
}

# query-pci/-block/-blockstats, info pci/block/blockstats, with the test
# guest's virtio-blk test doing I/O on d0 between the two looks.
t_pci_block() {
    local name=qmp-pci-block
    head -c 1048576 /dev/urandom >"$SCRATCH/$name-0.img"
    head -c 1048576 /dev/urandom >"$SCRATCH/$name-1.img"
    APPEND=test=virtio-blk start "$name" -S -no-shutdown \
        -qmp "unix:$SCRATCH/$name.qmp,server=on,wait=off" \
        -drive "file=$SCRATCH/$name-0.img,if=none,id=d0,format=raw" \
        -device virtio-blk-pci,drive=d0 \
        -drive "file=$SCRATCH/$name-1.img,if=none,id=d1,format=raw,readonly=on,cache=writethrough" \
        -device virtio-blk-pci,drive=d1,id=vd1 -device virtio-rng-pci,id=rng0
    if ! client "$name" "$name" "$SCRATCH/$name-0.img" "$SCRATCH/$name-1.img"; then
        fail "$name" "$(tail -1 "$SCRATCH/$name.client")"
        finish "$name" >/dev/null
        return
    fi
    finish "$name" 0 && pass "$name"
}

for t in $TESTS; do
    case $t in
    qmp-basic|qmp-stop-cont|qmp-reset|qmp-bad-input|qmp-two-clients|qmp-slow-client|qmp-reconnect)
        qmp_test "$t" ;;
    qmp-quit) qmp_test "$t" 0 ;;
    qmp-powerdown) t_powerdown ;;
    qmp-powerdown-guest) APPEND=test=powerbutton qmp_test "$t" 0 ;;
    hmp-powerdown) APPEND=test=powerbutton t_hmp_basic "$t" 0 ;;
    start-paused) qmp_test "$t" "" -S ;;
    no-shutdown) APPEND=test=hello qmp_test "$t" 0 -S -no-shutdown ;;
    qmp-slow-client-large-reply) qmp_test "$t" ;;
    qmp-wire-compat) t_wire_compat ;;
    qmp-pci-block) t_pci_block ;;
    hmp-basic) t_hmp_basic ;;
    *) fail "$t" "no such test (have: $ALL_TESTS)" ;;
    esac
done
exit $failed
