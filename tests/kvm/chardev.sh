#!/usr/bin/env bash
# KVM integration tests of kvmbox's character devices (serial back ends,
# input, -nographic) and process lifecycle (-pidfile, -daemonize, signals),
# with the project's test guest (tests/guest: test=hello, test=echo,
# test=halt). One line per test:
#   PASS name | FAIL name: reason | SKIP name: reason
# Usage: tests/kvm/chardev.sh [test...]      (default: all tests)
# Environment: KVMBOX (default build/kvmbox-san), KVM_TEST_TIMEOUT (s, 30:
#              the bound of each wait), KVM_TEST_KEEP=1 keeps the scratch dir.
# Needs socat (socket tests) and python3 (pty, -nographic, byte-exact
# comparisons); a test that needs a missing tool says SKIP and which.
set -u

cd "$(dirname "$0")/../.." || exit 1
TMO=${KVM_TEST_TIMEOUT:-30}
ALL_TESTS="serial-unix-server serial-unix-server-wait serial-tcp-server serial-unix-client"
ALL_TESTS+=" serial-pty serial-pty-reopen serial-file serial-null serial-input-echo"
ALL_TESTS+=" serial-input-flow-control nographic-escape stdio-eof pidfile daemonize"
ALL_TESTS+=" sigterm-sigint socket-client-disconnect chardev-socket chardev-pipe chardev-errors"
ALL_TESTS+=" serial-mon-stdio nographic-monitor"

# shellcheck source=tests/kvm/lib.sh
. tests/kvm/lib.sh
kvm_setup chardev
S=$SCRATCH

# --- helpers ----------------------------------------------------------------------
# Each test works in its own directory $S/NAME; every kvmbox argv contains
# that path (-D log), so leftover processes can be found by it.

# kvm_bg NAME [KVMBOX ARGS...]: start kvmbox in the background, stdin from
# $STDIN (default /dev/null); sets KPID. Output in $S/NAME/{out,err}.
kvm_bg() {
    local name=$1
    shift
    mkdir -p "$S/$name"
    "$KVMBOX" -m 64 -display none -D "$S/$name/log" "$@" \
        >"$S/$name/out" 2>"$S/$name/err" <"${STDIN:-/dev/null}" &
    KPID=$!
    BGPIDS+=("$KPID")
}

# wait_pid PID [SECS]: wait for a child to end; sets RC (124 and kills it
# after SECS, default $TMO).
wait_pid() {
    local pid=$1 n=$((${2:-$TMO} * 20)) i
    for ((i = 0; i < n; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        RC=124
        return 1
    fi
    wait "$pid" 2>/dev/null
    RC=$?
    return 0
}

# wait_match FILE ERE [SECS]: poll until FILE has a line matching ERE.
wait_match() {
    local file=$1 re=$2 n=$((${3:-$TMO} * 20)) i
    for ((i = 0; i < n; i++)); do
        { tr -d '\r' <"$file"; } 2>/dev/null | grep -qE -- "$re" && return 0
        sleep 0.05
    done
    return 1
}

# wait_gone PID [SECS]: poll until a process that is not our child is gone.
wait_gone() {
    local pid=$1 n=$((${2:-$TMO} * 20)) i
    for ((i = 0; i < n; i++)); do
        [ -d "/proc/$pid" ] || return 0
        # a zombie child of init may linger for a moment
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.05
    done
    return 1
}

# wait_guest_marker NAME MARKER: the guest wrote boot-timer MARKER (see -D).
# test=echo: 236 once it is ready for input; "waitkey": 87.
wait_guest_marker() {
    wait_match "$S/$1/log" "boot-timer: marker $2 "
}

# Problems common to every run of test NAME; prints a reason or nothing.
# Checks every *err file of the test for sanitizer reports, the guest output
# files given for FAIL lines, and leftover processes.
problems() {
    local name=$1
    shift
    run_problems "$S/$name/" "$S/$name"/*err "$S/$name"/asan* "$S/$name"/ubsan* -- "$@"
}

# describe NAME OUTFILE: exit status, last guest line, last stderr line.
describe() { describe_run "$2" "$S/$1/err"; }

# finish NAME WANT_RC OUTFILE ERE...: common problems, exit status, required
# lines in OUTFILE. Prints FAIL and returns 1, or returns 0.
finish() {
    local name=$1 want=$2 out=$3 p prob
    shift 3
    prob=$(problems "$name" "$out")
    if [ -n "$prob" ]; then fail "$name" "$prob ($(describe "$name" "$out"))"; return 1; fi
    if [ "$RC" != "$want" ]; then fail "$name" "want exit $want, $(describe "$name" "$out")"; return 1; fi
    for p in "$@"; do
        if ! text "$out" | grep -qE -- "$p"; then
            fail "$name" "no output line matching '$p' ($(describe "$name" "$out"))"
            return 1
        fi
    done
    return 0
}

# Socket client: socat with stdin from a FIFO we hold open, so the test
# decides when to send and when to disconnect.
# client_start NAME TAG SOCAT-ADDRESS: output in $S/NAME/TAG.out; sets CPID, CFD.
client_start() {
    local dir=$S/$1 tag=$2
    rm -f "$dir/$tag.in"
    mkfifo "$dir/$tag.in"
    socat -t 2 - "$3" <"$dir/$tag.in" >"$dir/$tag.out" 2>"$dir/$tag.err" &
    CPID=$!
    BGPIDS+=("$CPID")
    exec {CFD}>"$dir/$tag.in"
}
client_send() { printf '%s' "$1" >&"$CFD"; }
client_close() { exec {CFD}>&-; }

need() {
    local t=$1 tool
    shift
    for tool in "$@"; do
        if ! have "$tool"; then skip "$t" "$tool not installed (scripts/install-deps.sh test)"; return 1; fi
    done
}

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- tests ------------------------------------------------------------------------

# wait=off server: the guest waits for a key ("waitkey") so that the client
# that connects after start-up sees all of the output.
t_serial_unix_server() {
    local n=serial-unix-server
    need $n socat || return
    kvm_bg $n -kernel "$GUEST" -append "test=hello waitkey" -no-reboot \
        -serial "unix:$S/$n/sock,server,nowait"
    local k=$KPID
    if ! wait_guest_marker $n 87; then
        wait_pid "$k" 1
        fail $n "guest never waited for its key ($(describe $n "$S/$n/log"))"; return
    fi
    client_start $n c1 "UNIX-CONNECT:$S/$n/sock"
    client_send $'\n'
    wait_match "$S/$n/c1.out" '^hello: ok$'
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    finish $n 0 "$S/$n/c1.out" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    if [ -e "$S/$n/sock" ]; then fail $n "socket file $S/$n/sock left behind after exit"; return; fi
    pass $n
}

t_serial_unix_server_wait() {
    local n=serial-unix-server-wait
    need $n socat || return
    kvm_bg $n -kernel "$GUEST" -append "test=hello" -no-reboot -serial "unix:$S/$n/sock,server"
    local k=$KPID
    if ! wait_match "$S/$n/err" "^QEMU waiting for connection on: disconnected:unix:$S/$n/sock"; then
        wait_pid "$k" 1
        fail $n "no 'QEMU waiting for connection on: disconnected:unix:...' on stderr ($(describe $n "$S/$n/err"))"
        return
    fi
    sleep 1
    if ! kill -0 "$k" 2>/dev/null; then
        wait_pid "$k" 1; fail $n "kvmbox ended while waiting for a client ($(describe $n "$S/$n/err"))"; return
    fi
    if grep -q 'boot-timer' "$S/$n/log" 2>/dev/null; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "the guest ran before a client connected"; return
    fi
    client_start $n c1 "UNIX-CONNECT:$S/$n/sock"
    wait_match "$S/$n/c1.out" '^hello: ok$'
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    # The first line proves the guest did not start before the client: output
    # without a client is dropped.
    finish $n 0 "$S/$n/c1.out" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    pass $n
}

t_serial_tcp_server() {
    local n=serial-tcp-server port
    need $n socat python3 || return
    port=$(free_port)
    kvm_bg $n -kernel "$GUEST" -append "test=hello waitkey" -no-reboot \
        -serial "tcp:127.0.0.1:$port,server,nowait"
    local k=$KPID
    if ! wait_guest_marker $n 87; then
        wait_pid "$k" 1
        fail $n "guest never waited for its key ($(describe $n "$S/$n/log"))"; return
    fi
    client_start $n c1 "TCP:127.0.0.1:$port"
    client_send $'\n'
    wait_match "$S/$n/c1.out" '^hello: ok$'
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    finish $n 0 "$S/$n/c1.out" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    pass $n
}

t_serial_unix_client() {
    local n=serial-unix-client i
    need $n socat || return
    mkdir -p "$S/$n"
    socat -u "UNIX-LISTEN:$S/$n/sock" "OPEN:$S/$n/l.out,creat,trunc" 2>"$S/$n/l.err" &
    local l=$!
    BGPIDS+=("$l")
    for ((i = 0; i < 100; i++)); do [ -S "$S/$n/sock" ] && break; sleep 0.05; done
    kvm_bg $n -kernel "$GUEST" -append "test=hello" -no-reboot -serial "unix:$S/$n/sock"
    wait_pid "$KPID"
    local rc=$RC
    wait_pid "$l" 5
    RC=$rc
    finish $n 0 "$S/$n/l.out" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    pass $n
}

# Python client of a pty slave: open it (raw), expect/send steps.
# pty_client PTS LOG STEPS...: steps "send:TEXT", "expect:TEXT", "close",
# "open", "drain" (read until kvmbox closes the pty, at most 15 s). Prints
# what went wrong, nothing on success.
pty_client() {
    python3 - "$@" <<'EOF'
import os, select, sys, termios, time, tty
path, log = sys.argv[1], sys.argv[2]
fd = None
buf = b""
def opn():
    global fd
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)     # not TCSAFLUSH: keep what the guest sent
try:
    opn()
    for step in sys.argv[3:]:
        op, _, arg = step.partition(":")
        if op == "send":
            os.write(fd, arg.encode())
        elif op == "close":
            os.close(fd)
            fd = None
            time.sleep(0.3)
        elif op == "open":
            opn()
        elif op == "drain":
            end = time.time() + 15
            while time.time() < end:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try:
                        d = os.read(fd, 4096)
                    except OSError:
                        break
                    if not d:
                        break
                    open(log, "ab").write(d)
        elif op == "expect":
            end = time.time() + 15
            while arg.encode() not in buf:
                if time.time() > end:
                    print("no %r from the pty within 15 s; got %r" % (arg, buf[-120:]))
                    sys.exit(0)
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try:
                        d = os.read(fd, 4096)
                    except OSError as e:
                        print("reading the pty: %s" % e)
                        sys.exit(0)
                    if not d:
                        print("EOF on the pty before %r" % arg)
                        sys.exit(0)
                    buf += d
                    open(log, "ab").write(d)
            buf = buf[buf.index(arg.encode()) + len(arg):]
except OSError as e:
    print("pty %s: %s" % (path, e))
EOF
}

# pty_start NAME: kvmbox with -serial pty and test=echo; sets KPID and PTS.
pty_start() {
    local n=$1
    kvm_bg "$n" -kernel "$GUEST" -append "test=echo" -no-reboot -serial pty
    PTS=
    if wait_match "$S/$n/err" '^char device redirected to /dev/pts/[0-9]+ \(label serial0\)$' 10; then
        PTS=$(sed -n 's|^char device redirected to \(/dev/pts/[0-9]*\) (label serial0)$|\1|p' "$S/$n/err")
    fi
}

t_serial_pty() {
    local n=serial-pty why
    need $n python3 || return
    pty_start $n
    local k=$KPID
    if [ -z "$PTS" ]; then
        wait_pid "$k" 1
        fail $n "no 'char device redirected to /dev/pts/N (label serial0)' on stderr ($(describe $n "$S/$n/err"))"
        return
    fi
    # Open the pty before the guest is ready: no output may be missed.
    # The guest's last lines may be lost: when kvmbox exits, closing the pty
    # master hangs up the slave and the kernel discards what was not read
    # yet. Its power-off is checked in the -D log instead.
    why=$(pty_client "$PTS" "$S/$n/pty.out" "expect:echo: ready" "send:pty" "expect:PTY" \
        "send:q" "drain")
    wait_pid "$k"
    if [ -n "$why" ]; then
        problems $n >/dev/null
        fail $n "$why ($(describe $n "$S/$n/pty.out"))"; return
    fi
    finish $n 0 "$S/$n/pty.out" '^echo: ready' || return
    if ! grep -q 'guest powered off' "$S/$n/log"; then
        fail $n "the guest did not power off after 'q': $(tail -n1 "$S/$n/log")"; return
    fi
    pass $n
}

# A pty user that closes the slave and opens it again (like a terminal
# program restarted) must still reach the guest.
t_serial_pty_reopen() {
    local n=serial-pty-reopen why
    need $n python3 || return
    pty_start $n
    local k=$KPID
    if [ -z "$PTS" ]; then
        wait_pid "$k" 1
        fail $n "no 'char device redirected to /dev/pts/N' on stderr ($(describe $n "$S/$n/err"))"
        return
    fi
    why=$(pty_client "$PTS" "$S/$n/pty.out" "expect:echo: ready" "send:one" "expect:ONE" "close" "open" \
        "send:two" "expect:TWO" "send:q" "drain")
    wait_pid "$k" 25
    if [ -n "$why" ]; then
        problems $n >/dev/null
        fail $n "after closing and reopening $PTS: $why ($(describe $n "$S/$n/pty.out"))"; return
    fi
    finish $n 0 "$S/$n/pty.out" || return
    if ! grep -q 'guest powered off' "$S/$n/log"; then
        fail $n "the guest did not power off after 'q': $(tail -n1 "$S/$n/log")"; return
    fi
    pass $n
}

t_serial_file() {
    local n=serial-file
    kvm_bg $n -kernel "$GUEST" -append "test=hello" -no-reboot \
        -serial "file:$S/$n/com1" -serial "file:$S/$n/com2"
    wait_pid "$KPID"
    finish $n 0 "$S/$n/com1" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    if [ ! -f "$S/$n/com2" ]; then fail $n "COM2's file was not created"; return; fi
    if [ -s "$S/$n/com2" ]; then fail $n "COM2's file is not empty: $(head -c 80 "$S/$n/com2")"; return; fi
    if [ -s "$S/$n/out" ]; then fail $n "output on stdout with -serial file: $(head -c 80 "$S/$n/out")"; return; fi
    pass $n
}

t_serial_null() {
    local n=serial-null
    kvm_bg $n -kernel "$GUEST" -append "test=hello" -no-reboot \
        -serial null -serial "file:$S/$n/com2" -serial none -serial "file:$S/$n/com4"
    wait_pid "$KPID"
    finish $n 0 /dev/null || return
    if grep -q 'boot-timer: marker 1 ' "$S/$n/log"; then :; else
        fail $n "the guest did not reach hello's boot-timer mark: $(tail -n1 "$S/$n/log")"; return
    fi
    if [ -s "$S/$n/out" ]; then fail $n "output on stdout with -serial null: $(head -c 80 "$S/$n/out")"; return; fi
    if [ ! -f "$S/$n/com2" ] || [ ! -f "$S/$n/com4" ]; then fail $n "COM2/COM4 files not created"; return; fi
    pass $n
}

# Guest test=echo on stdio fed from a FIFO: input is sent once the guest
# says (boot-timer marker 236) it is ready.
t_serial_input_echo() {
    local n=serial-input-echo fd
    mkdir -p "$S/$n"
    mkfifo "$S/$n/in"
    STDIN=$S/$n/in kvm_bg $n -kernel "$GUEST" -append "test=echo" -no-reboot -serial stdio
    local k=$KPID
    exec {fd}>"$S/$n/in"
    if wait_guest_marker $n 236; then
        printf 'abc' >&"$fd"
        wait_match "$S/$n/out" 'ABC' 10
        printf 'q' >&"$fd"
    fi
    wait_pid "$k"
    exec {fd}>&-
    finish $n 0 "$S/$n/out" '^echo: ready' 'ABC' '^echo: [1-9][0-9]* irqs, 3 bytes' '^echo: done$' || return
    pass $n
}

# 4 KiB at once (the FIFO holds 16): every byte back, in order.
t_serial_input_flow_control() {
    local n=serial-input-flow-control why
    need $n socat python3 || return
    mkdir -p "$S/$n"
    python3 -c 'import random, sys
random.seed(7)
cs = "abcdefghijklmnoprstuvwxyz0123456789-=+.,/ "
sys.stdout.write("".join(random.choice(cs) for _ in range(4096)))' >"$S/$n/input"
    kvm_bg $n -kernel "$GUEST" -append "test=echo" -no-reboot -serial "unix:$S/$n/sock,server"
    local k=$KPID
    wait_match "$S/$n/err" '^QEMU waiting for connection' 10
    client_start $n c1 "UNIX-CONNECT:$S/$n/sock"
    if wait_guest_marker $n 236; then
        cat "$S/$n/input" >&"$CFD"
        wait_match "$S/$n/c1.out" "$(tail -c 24 "$S/$n/input" | tr '[:lower:]' '[:upper:]' | sed 's/[.+]/\\&/g')" 20
        client_send q
    fi
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    finish $n 0 "$S/$n/c1.out" '^echo: [1-9][0-9]* irqs, 4096 bytes, 0 overruns$' '^echo: done$' || return
    why=$(python3 - "$S/$n/c1.out" "$S/$n/input" <<'EOF'
import sys
out = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read().upper()
try:
    s = out.index(b"\r\n", out.index(b"echo: ready")) + 2
    e = out.index(b"\r\necho: ", s)
except ValueError:
    print("output not framed by 'echo: ready' / 'echo: N irqs'")
    sys.exit()
got = out[s:e]
if got != want:
    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
    print("echoed %d bytes, want %d; first difference at byte %d: got %r want %r"
          % (len(got), len(want), i, got[i:i + 16], want[i:i + 16]))
EOF
)
    if [ -n "$why" ]; then fail $n "$why"; return; fi
    pass $n
}

# -nographic on a pty: raw mode, Ctrl-a h / Ctrl-a x, terminal restored.
t_nographic_escape() {
    local n=nographic-escape why
    need $n python3 || return
    mkdir -p "$S/$n"
    why=$(timeout -k 5 $((TMO + 30)) python3 - "$KVMBOX" "$GUEST" "$S/$n" <<'EOF'
import os, pty, select, signal, sys, time
kvmbox, guest, d = sys.argv[1:4]
q = lambda s: "'" + s.replace("'", "'\\''") + "'"
script = ("stty -g > %s/before; %s -m 64 -display none -nographic -kernel %s -append test=echo "
          "-no-reboot -D %s/log 2>%s/err; echo $? > %s/rc; stty -g > %s/after"
          % (q(d), q(kvmbox), q(guest), q(d), q(d), q(d), q(d)))
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", script])
out = b""
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
        open(d + "/tty.out", "ab").write(data)
    return True
def expect(what, src=lambda: out, t=10):
    end = time.time() + t
    while what not in src():
        if time.time() > end:
            return False
        if not pump(0.1):
            return what in src()
    return True
def err():
    try:
        return open(d + "/err", "rb").read()
    except OSError:
        return b""
def log():
    try:
        return open(d + "/log", "rb").read()
    except OSError:
        return b""
def bail(msg):
    print(msg)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    sys.exit(0)
if not expect(b"boot-timer: marker 236 ", log, 20):
    bail("guest never got ready; terminal: %r" % out[-100:])
os.write(fd, b"ab")                      # no newline: only raw mode delivers it
if not expect(b"AB"):
    bail("typed 'ab' (no newline) never reached the guest: terminal not in raw mode? got %r" % out[-100:])
if b"ab" in out:
    bail("the terminal echoed the typed 'ab' locally (ECHO still on)")
os.write(fd, b"\x03")                    # Ctrl-C: a byte for the guest under -nographic
time.sleep(0.3)
os.write(fd, b"z")
if not expect(b"\x03Z"):
    bail("Ctrl-C did not reach the guest as a byte (ISIG on?); got %r" % out[-100:])
os.write(fd, b"\x01\x01")                # Ctrl-a Ctrl-a: one Ctrl-a to the guest
os.write(fd, b"y")
if not expect(b"\x01Y"):
    bail("Ctrl-a Ctrl-a did not send one Ctrl-a; got %r" % out[-100:])
os.write(fd, b"\x01h")
if not expect(b"C-a x", lambda: err() + out):
    bail("Ctrl-a h printed no help (no 'C-a x'); stderr %r" % err()[-200:])
os.write(fd, b"\x01x")
end = time.time() + 15
while time.time() < end and pump(0.2):
    pass
wpid = 0
end = time.time() + 10                   # the pty closes just before the shell exits
while wpid == 0 and time.time() < end:
    try:
        wpid, st = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        wpid = pid
    if wpid == 0:
        time.sleep(0.05)
if wpid == 0:
    bail("still running 15 s after Ctrl-a x (kvmbox %s)" % ("ended" if os.path.exists(d + "/rc") else "still running"))
try:
    rc = open(d + "/rc").read().strip()
    before = open(d + "/before").read().strip()
    after = open(d + "/after").read().strip()
except OSError as e:
    bail("shell in the pty did not finish: %s" % e)
if rc != "0":
    bail("exit status %s after Ctrl-a x, want 0" % rc)
if before != after:
    bail("terminal settings not restored: stty -g before %s, after %s" % (before, after))
if b"echo: done" in out:
    bail("guest saw the 'x' of Ctrl-a x as input")
EOF
)
    [ $? = 124 ] && why="python pty driver timed out; $why"
    if [ -n "$why" ]; then
        problems $n >/dev/null
        fail $n "$why"; return
    fi
    RC=0
    finish $n 0 /dev/null || return
    pass $n
}

# stdin at EOF with -serial stdio: no stop, no spin.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }
t_stdio_eof() {
    local n=stdio-eof t0 t1 hz
    hz=$(getconf CLK_TCK)
    # (a) </dev/null: test=hello runs to completion.
    kvm_bg $n -kernel "$GUEST" -append "test=hello" -no-reboot -serial stdio
    wait_pid "$KPID"
    finish $n 0 "$S/$n/out" '^hello: ok$' || return
    # (b) a closed pipe and /dev/null, with a halted guest for 2 s: CPU time.
    local src
    for src in pipe devnull; do
        mkdir -p "$S/$n/$src"
        if [ $src = pipe ]; then
            : | "$KVMBOX" -m 64 -display none -D "$S/$n/$src/log" -kernel "$GUEST" \
                -append "test=halt" -no-reboot -serial stdio >"$S/$n/$src/out" 2>"$S/$n/$src/err" &
        else
            "$KVMBOX" -m 64 -display none -D "$S/$n/$src/log" -kernel "$GUEST" \
                -append "test=halt" -no-reboot -serial stdio >"$S/$n/$src/out" 2>"$S/$n/$src/err" </dev/null &
        fi
        local k=$!
        BGPIDS+=("$k")
        wait_match "$S/$n/$src/out" '^halt: halting' 20
        sleep 0.5
        t0=$(cputicks "$k")
        sleep 2
        t1=$(cputicks "$k")
        kill -TERM "$k" 2>/dev/null
        wait_pid "$k" 10
        cp "$S/$n/$src/err" "$S/$n/$src.err"
        finish $n 0 "$S/$n/$src/out" '^halt: halting' || return
        if [ -z "$t0" ] || [ -z "$t1" ]; then fail $n "stdin from $src: kvmbox ended early"; return; fi
        if (((t1 - t0) * 100 / hz > 20)); then
            fail $n "stdin at EOF ($src): kvmbox used $(((t1 - t0) * 1000 / hz)) ms CPU in 2 s with a halted guest (spinning?)"
            return
        fi
    done
    pass $n
}

t_pidfile() {
    local n=pidfile k got
    kvm_bg $n -kernel "$GUEST" -append "test=halt" -no-reboot \
        -serial "file:$S/$n/com1" -pidfile "$S/$n/pid"
    k=$KPID
    if ! wait_match "$S/$n/com1" '^halt: halting' 20; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "guest never halted ($(describe $n "$S/$n/com1"))"; return
    fi
    got=$(cat "$S/$n/pid" 2>/dev/null)
    if [ "$got" != "$k" ]; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "pid file holds '$got', kvmbox is $k"; return
    fi
    # A second instance with the same pid file must refuse to run.
    mkdir -p "$S/$n/second"
    timeout -k 5 "$TMO" "$KVMBOX" -m 64 -display none -kernel "$GUEST" -append "test=hello" -no-reboot \
        -serial "file:$S/$n/second/com1" -pidfile "$S/$n/pid" >"$S/$n/second.out" 2>"$S/$n/second.err" </dev/null
    local rc2=$?
    if [ "$rc2" = 0 ] || [ "$rc2" = 124 ]; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "second kvmbox with the same pid file: exit $rc2, want failure"; return
    fi
    if [ "$(grep -cv '^$' "$S/$n/second.err")" != 1 ]; then
        kill -KILL "$k"; wait_pid "$k" 1
        fail $n "second kvmbox: want a one-line message, stderr has $(grep -cv '^$' "$S/$n/second.err") lines: $(head -c 200 "$S/$n/second.err")"
        return
    fi
    if text "$S/$n/second/com1" | grep -q 'hello: ok'; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "second kvmbox ran its guest despite the locked pid file"; return
    fi
    got=$(cat "$S/$n/pid" 2>/dev/null)
    if [ "$got" != "$k" ]; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "after the second instance failed the pid file holds '$got', want $k"; return
    fi
    kill -TERM "$k"
    wait_pid "$k" 10
    finish $n 0 "$S/$n/com1" || return
    if [ -e "$S/$n/pid" ]; then fail $n "pid file still exists after SIGTERM"; return; fi
    pass $n
}

t_daemonize() {
    local n=daemonize rc p t0 t1
    mkdir -p "$S/$n"
    # The daemon's stderr is /dev/null: sanitizer reports go to files.
    t0=$(date +%s%N)
    ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$S/$n/asan" UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$S/$n/ubsan" \
        timeout -k 5 20 "$KVMBOX" -m 64 -display none -D "$S/$n/log" -kernel "$GUEST" -append "test=halt" \
        -no-reboot -daemonize -pidfile "$S/$n/pid" -serial "file:$S/$n/com1" \
        >"$S/$n/out" 2>"$S/$n/err" </dev/null &
    local cmd=$!
    BGPIDS+=("$cmd")
    wait_pid "$cmd" 20
    rc=$RC
    t1=$(date +%s%N)
    p=$(cat "$S/$n/pid" 2>/dev/null)
    [ -n "$p" ] && DAEMONS+=("$p")
    if [ "$rc" != 0 ]; then
        fail $n "-daemonize returned $rc, want 0 ($(describe $n "$S/$n/err"))"; return
    fi
    if (((t1 - t0) / 1000000 > 5000)); then fail $n "-daemonize took $(((t1 - t0) / 1000000)) ms to return"; return; fi
    if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then fail $n "pid file '$p': no such process"; return; fi
    if [ "$p" = "$cmd" ]; then fail $n "the daemon is the original command's pid"; return; fi
    if ! grep -qa -- "$S/$n/pid" "/proc/$p/cmdline"; then fail $n "pid $p is not our kvmbox"; return; fi
    if [ "$(awk '{print $6}' "/proc/$p/stat")" != "$p" ]; then
        fail $n "the daemon is not a session leader (setsid)"; return
    fi
    if ! wait_match "$S/$n/com1" '^halt: halting' 20; then fail $n "daemon's guest never halted: $(lastline "$S/$n/com1")"; return; fi
    kill -TERM "$p"
    if ! wait_gone "$p" 10; then kill -KILL "$p"; fail $n "daemon still running 10 s after SIGTERM"; return; fi
    if [ -e "$S/$n/pid" ]; then fail $n "pid file left behind by the daemon"; return; fi
    RC=0
    finish $n 0 "$S/$n/com1" || return

    # A bad kernel: status 2, the error on stderr (the parent's).
    timeout -k 5 20 "$KVMBOX" -m 64 -display none -kernel "$S/$n/no-such-kernel" -daemonize \
        -pidfile "$S/$n/pid2" -serial "file:$S/$n/com1b" >"$S/$n/bad.out" 2>"$S/$n/bad.err" </dev/null
    rc=$?
    if [ "$rc" != 2 ]; then fail $n "-daemonize with a missing kernel: exit $rc, want 2"; return; fi
    if ! grep -q 'no-such-kernel' "$S/$n/bad.err"; then
        fail $n "-daemonize with a missing kernel: error not on stderr ('$(head -c 160 "$S/$n/bad.err")')"; return
    fi
    if [ -e "$S/$n/pid2" ]; then fail $n "-daemonize with a missing kernel left a pid file"; return; fi

    # With a serial port on stdio: refused.
    timeout -k 5 20 "$KVMBOX" -m 64 -display none -kernel "$GUEST" -append "test=hello" -daemonize \
        -serial stdio >"$S/$n/stdio.out" 2>"$S/$n/stdio.err" </dev/null
    rc=$?
    if [ "$rc" != 2 ]; then fail $n "-daemonize -serial stdio: exit $rc, want 2"; return; fi
    if [ ! -s "$S/$n/stdio.err" ]; then fail $n "-daemonize -serial stdio: no error message"; return; fi
    local prob
    prob=$(problems $n)
    if [ -n "$prob" ]; then fail $n "$prob"; return; fi
    pass $n
}

t_sigterm_sigint() {
    local n=sigterm-sigint sig
    for sig in INT TERM; do
        local m=$n/$sig
        kvm_bg "$m" -kernel "$GUEST" -append "test=halt" -no-reboot -serial "file:$S/$m/com1"
        local k=$KPID
        if ! wait_match "$S/$m/com1" '^halt: halting' 20; then
            kill -KILL "$k"; wait_pid "$k" 1; fail $n "SIG$sig: guest never halted"; return
        fi
        sleep 0.3
        kill -"$sig" "$k"
        wait_pid "$k" 10
        cp "$S/$m/err" "$S/$n/$sig.err"
        if [ "$RC" != 0 ]; then fail $n "SIG$sig: exit $RC, want 0 ($(describe "$m" "$S/$m/com1"))"; return; fi
        if ! grep -q 'terminating on signal' "$S/$m/err"; then
            fail $n "SIG$sig: no 'terminating on signal' on stderr ($(describe "$m" "$S/$m/com1"))"; return
        fi
    done
    finish $n 0 /dev/null || return
    pass $n
}

# A client connects and leaves (orderly, then abruptly in the middle of a
# burst of input the guest is echoing); a later client is still served.
t_socket_client_disconnect() {
    local n=socket-client-disconnect k i
    need $n socat python3 || return
    kvm_bg $n -kernel "$GUEST" -append "test=echo" -no-reboot -serial "unix:$S/$n/sock,server,nowait"
    k=$KPID
    if ! wait_guest_marker $n 236; then
        wait_pid "$k" 1; fail $n "guest never got ready ($(describe $n "$S/$n/log"))"; return
    fi
    # 1: connect, send, read the echo, disconnect (EOF on the socket).
    client_start $n c1 "UNIX-CONNECT:$S/$n/sock"
    client_send one
    wait_match "$S/$n/c1.out" 'ONE' 10
    client_close
    wait_pid "$CPID" 5
    if ! text "$S/$n/c1.out" | grep -q ONE; then
        kill -KILL "$k"; wait_pid "$k" 1; fail $n "first client got no echo: '$(lastline "$S/$n/c1.out")'"; return
    fi
    # 2: a client that sends 2 KiB and disappears at once, not reading the
    # echo (kvmbox writes to a socket whose peer is gone).
    python3 - "$S/$n/sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"x" * 2048)
s.close()
EOF
    sleep 1
    if ! kill -0 "$k" 2>/dev/null; then
        wait_pid "$k" 1
        local st="exit $RC"
        ((RC > 128)) && st="killed by signal $((RC - 128)) ($(kill -l $((RC - 128)) 2>/dev/null))"
        fail $n "kvmbox died after a client disconnected with echo output pending: $st; stderr: '$(lastline "$S/$n/err")'"
        return
    fi
    # 3: a new client is served.
    for ((i = 0; i < 3; i++)); do
        client_start $n c3 "UNIX-CONNECT:$S/$n/sock"
        client_send two
        if wait_match "$S/$n/c3.out" 'TWO' 5; then break; fi
        client_close
        wait_pid "$CPID" 5
    done
    client_send q
    wait_match "$S/$n/c3.out" '^echo: done' 10
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    finish $n 0 "$S/$n/c3.out" 'TWO' '^echo: [1-9][0-9]* irqs' '^echo: done$' || return
    pass $n
}

# -chardev socket + -serial chardev:ID carries the guest's output.
t_chardev_socket() {
    local n=chardev-socket
    need $n socat || return
    kvm_bg $n -kernel "$GUEST" -append "test=hello waitkey" -no-reboot \
        -chardev "socket,id=c0,path=$S/$n/sock,server=on,wait=off" -serial chardev:c0
    local k=$KPID
    if ! wait_guest_marker $n 87; then
        wait_pid "$k" 1
        fail $n "guest never waited for its key ($(describe $n "$S/$n/log"))"; return
    fi
    client_start $n c1 "UNIX-CONNECT:$S/$n/sock"
    client_send $'\n'
    wait_match "$S/$n/c1.out" '^hello: ok$'
    wait_pid "$k"
    client_close
    wait_pid "$CPID" 5
    finish $n 0 "$S/$n/c1.out" '^kvmbox-testguest: test=hello$' '^hello: ok$' || return
    pass $n
}

# -chardev pipe: input from PATH.in, output to PATH.out (test=echo).
t_chardev_pipe() {
    local n=chardev-pipe fd rpid
    mkdir -p "$S/$n"
    mkfifo "$S/$n/p.in" "$S/$n/p.out"
    kvm_bg $n -kernel "$GUEST" -append "test=echo" -no-reboot \
        -chardev "pipe,id=p0,path=$S/$n/p" -serial chardev:p0
    local k=$KPID
    cat "$S/$n/p.out" >"$S/$n/com1" &
    rpid=$!
    BGPIDS+=("$rpid")
    exec {fd}<>"$S/$n/p.in"
    if wait_guest_marker $n 236; then
        printf 'pipe' >&"$fd"
        wait_match "$S/$n/com1" 'PIPE' 10
        printf 'q' >&"$fd"
    fi
    wait_pid "$k"
    exec {fd}>&-
    wait_pid "$rpid" 5
    finish $n 0 "$S/$n/com1" '^echo: ready' 'PIPE' '^echo: done$' || return
    pass $n
}

# Command-line errors of the chardev/monitor options: exit 2, one line
# naming the option.
t_chardev_errors() {
    local n=chardev-errors rc i
    mkdir -p "$S/$n"
    local -a cases=(
        "-chardev|-chardev null,id=a -chardev null,id=a -serial chardev:a"
        "stdio by multiple|-serial stdio -monitor stdio"
        "stdio by multiple|-nographic -monitor stdio"
        "-serial|-serial chardev:nosuch"
        "-mon|-chardev null,id=a -mon a,mode=bogus"
        "-uuid|-uuid not-a-uuid"
    )
    for ((i = 0; i < ${#cases[@]}; i++)); do
        local want=${cases[$i]%%|*} args=${cases[$i]#*|}
        # shellcheck disable=SC2086
        timeout -k 5 20 "$KVMBOX" -m 64 -display none -kernel "$GUEST" $args \
            >"$S/$n/$i.out" 2>"$S/$n/$i.err" </dev/null
        rc=$?
        if [ "$rc" != 2 ]; then fail $n "'$args': exit $rc, want 2"; return; fi
        if [ "$(grep -cv '^$' "$S/$n/$i.err")" != 1 ] || ! grep -qF -- "$want" "$S/$n/$i.err"; then
            fail $n "'$args': want one line mentioning '$want', got: $(head -c 200 "$S/$n/$i.err")"; return
        fi
    done
    RC=0
    finish $n 0 /dev/null || return
    pass $n
}

# The mux of serial port and HMP monitor on stdio, driven through a pty:
# COM1 has the focus (test=echo echoes typed bytes uppercased), Ctrl-a c
# switches to the monitor, which prints QEMU's banner and "(qemu) ";
# `info status` answers "VM status: running"; Ctrl-a c goes back to COM1;
# Ctrl-a x quits with status 0.
# mux_monitor_test NAME KVMBOX-ARGS...: -serial mon:stdio, or -nographic
# alone (its default: serial and monitor multiplexed on stdio).
mux_monitor_test() {
    local n=$1 why
    shift
    need $n python3 || return
    mkdir -p "$S/$n"
    why=$(timeout -k 5 $((TMO + 30)) python3 - "$KVMBOX" "$GUEST" "$S/$n" "$@" <<'EOF'
import os, pty, select, signal, sys, time
kvmbox, guest, d = sys.argv[1:4]
extra = sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(kvmbox, [kvmbox, "-m", "64", "-display", "none"] + extra +
             ["-kernel", guest, "-append", "test=echo", "-no-reboot", "-D", d + "/log"])
out = b""
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
        open(d + "/tty.out", "ab").write(data)
    return True
def expect(what, t=10, src=lambda: out, since=0):
    end = time.time() + t
    while what not in src()[since:]:
        if time.time() > end:
            return False
        if not pump(0.1):
            return what in src()[since:]
    return True
def log():
    try:
        return open(d + "/log", "rb").read()
    except OSError:
        return b""
def bail(msg):
    print(msg)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
    sys.exit(0)
if not expect(b"boot-timer: marker 236 ", 20, log):
    bail("guest never got ready; terminal: %r" % out[-100:])
os.write(fd, b"ab")
if not expect(b"AB"):
    bail("input did not reach COM1 (focus should start on the serial port); got %r" % out[-100:])
mark = len(out)
os.write(fd, b"\x01c")
banner = b"QEMU 7.2.0 monitor - type 'help' for more information"
if not expect(banner, 5, since=mark):
    bail("Ctrl-a c: no monitor banner %r; got %r" % (banner, out[mark:][-160:]))
if not expect(b"(qemu) ", 5, since=mark):
    bail("Ctrl-a c: no '(qemu) ' prompt; got %r" % out[mark:][-160:])
mark = len(out)
os.write(fd, b"info status\r")
if not expect(b"VM status: running", 5, since=mark):
    bail("'info status' in the monitor: no 'VM status: running'; got %r" % out[mark:][-160:])
if not expect(b"(qemu) ", 5, since=out.index(b"VM status: running", mark)):
    bail("no prompt after 'info status'; got %r" % out[mark:][-160:])
if b"INFO STATUS" in out[mark:]:
    bail("monitor input reached the guest: %r" % out[mark:][-160:])
os.write(fd, b"\x01c")
time.sleep(0.3)
mark = len(out)
os.write(fd, b"cd")
if not expect(b"CD", since=mark):
    bail("after Ctrl-a c twice input did not reach COM1 again; got %r" % out[-100:])
os.write(fd, b"\x01x")
end = time.time() + 15
while time.time() < end and pump(0.2):
    pass
wpid, st = 0, 0
end = time.time() + 10
while time.time() < end:
    wpid, st = os.waitpid(pid, os.WNOHANG)
    if wpid:
        break
    time.sleep(0.05)
if not wpid:
    bail("Ctrl-a x: kvmbox still running 25 s later")
if not os.WIFEXITED(st) or os.WEXITSTATUS(st) != 0:
    print("Ctrl-a x: wait status %r, want exit 0" % st)
EOF
)
    [ $? = 124 ] && why="python pty driver timed out; $why"
    if [ -n "$why" ]; then
        problems $n >/dev/null
        fail $n "$why"; return
    fi
    RC=0
    finish $n 0 /dev/null || return
    pass $n
}

t_serial_mon_stdio() { mux_monitor_test serial-mon-stdio -serial mon:stdio; }
t_nographic_monitor() { mux_monitor_test nographic-monitor -nographic; }

for t in $TESTS; do
    case $t in
    serial-unix-server) t_serial_unix_server ;;
    serial-unix-server-wait) t_serial_unix_server_wait ;;
    serial-tcp-server) t_serial_tcp_server ;;
    serial-unix-client) t_serial_unix_client ;;
    serial-pty) t_serial_pty ;;
    serial-pty-reopen) t_serial_pty_reopen ;;
    serial-file) t_serial_file ;;
    serial-null) t_serial_null ;;
    serial-input-echo) t_serial_input_echo ;;
    serial-input-flow-control) t_serial_input_flow_control ;;
    nographic-escape) t_nographic_escape ;;
    stdio-eof) t_stdio_eof ;;
    pidfile) t_pidfile ;;
    daemonize) t_daemonize ;;
    sigterm-sigint) t_sigterm_sigint ;;
    socket-client-disconnect) t_socket_client_disconnect ;;
    chardev-socket) t_chardev_socket ;;
    chardev-pipe) t_chardev_pipe ;;
    chardev-errors) t_chardev_errors ;;
    serial-mon-stdio) t_serial_mon_stdio ;;
    nographic-monitor) t_nographic_monitor ;;
    *) fail "$t" "no such test (have: $ALL_TESTS)" ;;
    esac
done
exit $failed
