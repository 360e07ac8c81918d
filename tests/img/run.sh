#!/usr/bin/env bash
# kvmbox-img against Debian's qemu-img (the reference) on the same inputs.
# One line per test:  PASS name | FAIL name: reason | SKIP name: reason
# Usage: tests/img/run.sh [test...]        (default: all tests)
# Environment: KVMBOX_IMG (default build/kvmbox-img-san), IMG_TEST_KEEP=1
#              keeps the scratch directory.
set -u

cd "$(dirname "$0")/../.." || exit 1
K=${KVMBOX_IMG:-build/kvmbox-img-san}
case $K in /*) ;; *) K=$PWD/$K ;; esac
ALL_TESTS="create info check check-repair convert convert-compressed convert-qemu-made resize map compare snapshot hostile measure commit rebase amend bench"
# More verbs' tests live in their own files (each appends to ALL_TESTS and
# defines t_NAME functions that use the helpers below).
IMG_TEST_DIR=$PWD/tests/img
for f in "$IMG_TEST_DIR"/t_*.sh; do
    [ -e "$f" ] && ALL_TESTS="$ALL_TESTS $(sed -n 's/^# tests: //p' "$f")"
done
TESTS=${*:-$ALL_TESTS}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }
skip() { echo "SKIP $1: $2"; }

if [ ! -x "$K" ]; then
    for t in $TESTS; do skip "$t" "$K not built (make build/kvmbox-img-san)"; done
    exit 0
fi
if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1; then
    for t in $TESTS; do skip "$t" "qemu-img/qemu-io not installed (Debian qemu-utils)"; done
    exit 0
fi

D=$(mktemp -d /tmp/kvmbox-img-test.XXXXXX)
cleanup() { [ "${IMG_TEST_KEEP:-0}" = 1 ] && echo "# kept $D" || rm -rf "$D"; }
trap cleanup EXIT
cd "$D" || exit 1

# Run both tools with the same arguments; compare stdout+stderr (tool names
# unified) and exit codes. $1: label for failures; rest: arguments.
same() {
    local a b ra rb
    a=$(qemu-img "$@" 2>&1); ra=$?
    b=$("$K" "$@" 2>&1); rb=$?
    a=${a//qemu-img/TOOL}; b=${b//kvmbox-img/TOOL}
    if [ "$ra" != "$rb" ]; then echo "exit $rb, qemu-img $ra for: $*"; return 1; fi
    if [ "$a" != "$b" ]; then
        echo "output differs for: $*: $(diff <(echo "$a") <(echo "$b") | head -5 | tr '\n' '|')"
        return 1
    fi
    return 0
}
# Like same, but each tool works on its own copy of the image (writers).
same_on_copies() {   # same_on_copies IMAGE args... (IMAGE placeholder @)
    local img=$1; shift
    cp "$img" q_"$img"; cp "$img" k_"$img"
    local qa=() ka=()
    for x in "$@"; do qa+=("${x//@/q_$img}"); ka+=("${x//@/k_$img}"); done
    local a b ra rb
    a=$(qemu-img "${qa[@]}" 2>&1); ra=$?
    b=$("$K" "${ka[@]}" 2>&1); rb=$?
    a=${a//qemu-img/TOOL}; a=${a//q_$img/IMG}; b=${b//kvmbox-img/TOOL}; b=${b//k_$img/IMG}
    if [ "$ra" != "$rb" ]; then echo "exit $rb, qemu-img $ra for: $*"; return 1; fi
    if [ "$a" != "$b" ]; then
        echo "output differs for: $*: $(diff <(echo "$a") <(echo "$b") | head -5 | tr '\n' '|')"
        return 1
    fi
}
qcheck() { qemu-img check "$@" >/dev/null 2>&1 || { echo "qemu-img check $* failed: $(qemu-img check "$@" 2>&1 | head -3 | tr '\n' '|')"; return 1; }; }
asan_clean() { ! grep -q "ERROR: AddressSanitizer\|runtime error" "$1" 2>/dev/null; }
for f in "$IMG_TEST_DIR"/t_*.sh; do [ -e "$f" ] && . "$f"; done

# Leaked clusters: a fresh 64 KiB-cluster image (header, reftable, refblock,
# L1 = clusters 0-3) with clusters 4 and 5 counted but unused.
make_leaky() {
    "$K" create -q -f qcow2 "$1" 1G >/dev/null || return 1
    printf '\x00\x01\x00\x01' | dd of="$1" bs=1 seek=$((0x20000 + 8)) conv=notrunc 2>/dev/null
    truncate -s $((6 * 65536)) "$1"
}
# A refcount that is too low (the L1 table's, cluster 3).
make_corrupt() {
    "$K" create -q -f qcow2 "$1" 1G >/dev/null || return 1
    printf '\x00\x00' | dd of="$1" bs=1 seek=$((0x20000 + 6)) conv=notrunc 2>/dev/null
}
# A qemu-made image with data, zeros, a compressed cluster.
make_src() {
    qemu-img create -q -f qcow2 "$1" 64M
    qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 5M 300k' -c 'write -z 10M 1M' \
            -c 'write -c -P 0x55 12M 64k' -c 'write -P 0x33 63M 1M' "$1" >/dev/null
}

t_create() {
    local e=""
    for o in "" "-o cluster_size=4k" "-o cluster_size=512" "-o cluster_size=2M" \
             "-o preallocation=metadata" "-o preallocation=falloc" "-o preallocation=full" \
             "-o lazy_refcounts=on" "-o compat=0.10" "-o compat=1.1,lazy_refcounts=off" \
             "-o compression_type=zstd" "-o compression_type=zlib,compat=0.10" "-o refcount_bits=1" \
             "-o refcount_bits=64,cluster_size=512" "-o refcount_bits=2,cluster_size=4k,preallocation=metadata" \
             "-o compression_type=zstd,lazy_refcounts=on,refcount_bits=8" "-o refcount_bits=0x20"; do
        rm -f q.qcow2 k.qcow2
        a=$(qemu-img create -f qcow2 $o q.qcow2 5M 2>&1); b=$("$K" create -f qcow2 $o k.qcow2 5M 2>&1)
        [ "${a//q.qcow2/X}" = "${b//k.qcow2/X}" ] || e="$e; create $o: '$b' vs '$a'"
        qcheck k.qcow2 || e="$e; $o: check"
        [ "$(qemu-img info k.qcow2 | grep -v 'disk size\|image:')" = "$(qemu-img info q.qcow2 | grep -v 'disk size\|image:')" ] || e="$e; $o: info differs"
    done
    # The compression type as qemu-img writes it: incompatible bit 3, byte
    # 104, header length 112 (the whole 112-byte header equal).
    rm -f q.qcow2 k.qcow2
    qemu-img create -q -f qcow2 -o compression_type=zstd q.qcow2 5M; "$K" create -q -f qcow2 -o compression_type=zstd k.qcow2 5M
    [ "$(od -An -tx1 -j72 -N40 k.qcow2 | tr -d ' \n')" = "$(printf '%016x%016x%016x%08x%08x%02x%014x' 8 0 0 4 112 1 0)" ] || e="$e; zstd header bytes"
    cmp -s <(head -c 112 q.qcow2) <(head -c 112 k.qcow2) || e="$e; zstd header differs from qemu-img's"
    qemu-io -c 'write -c -P 7 0 64k' k.qcow2 >/dev/null && qemu-io -c 'read -P 7 0 64k' k.qcow2 | grep -q "^read 65536" || e="$e; qemu-io zstd write/read"
    for o in "-f raw" "-f raw -o preallocation=falloc" "-f raw -o preallocation=full"; do
        rm -f q.raw k.raw
        a=$(qemu-img create $o q.raw 1000 2>&1); b=$("$K" create $o k.raw 1000 2>&1)
        [ "${a//q.raw/X}" = "${b//k.raw/X}" ] || e="$e; create $o: '$b' vs '$a'"
        cmp -s q.raw k.raw || e="$e; $o: content"
    done
    "$K" create -q -f qcow2 base.qcow2 8M
    a=$(qemu-img create -f qcow2 -b base.qcow2 -F qcow2 q.qcow2 2>&1); b=$("$K" create -f qcow2 -b base.qcow2 -F qcow2 k.qcow2 2>&1)
    [ "${a//q.qcow2/X}" = "${b//k.qcow2/X}" ] || e="$e; backing: '$b' vs '$a'"
    qcheck k.qcow2 || e="$e; backing check"
    qemu-img info k.qcow2 | grep -q "backing file: base.qcow2" || e="$e; backing info"
    for args in "-f qcow2 x.qcow2 1X" "-f qcow2 -o foo=1 x.qcow2 1M" "-f qcow2 x.qcow2" \
                "-f vmdkx x.img 1M" "-f qcow2 -o cluster_size=3000 x.qcow2 1M" \
                "-f qcow2 -b base.qcow2 x.qcow2" "-f qcow2 -F qcow2 x.qcow2 1M" \
                "-f qcow2 -o compression_type=lz4 x.qcow2 1M" "-f qcow2 -o compression_type=zstd,compat=0.10 x.qcow2 1M" \
                "-f qcow2 -o compression_type=lz4,cluster_size=3000 x.qcow2 1M" "-f qcow2 -o refcount_bits=3 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=128 x.qcow2 1M" "-f qcow2 -o refcount_bits=-1 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=abc x.qcow2 1M" "-f qcow2 -o refcount_bits=08 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=99999999999999999999 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=18446744073709551615,compression_type=lz4 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=8,compat=0.10 x.qcow2 1M" "-f qcow2 -o refcount_bits=3,cluster_size=3000 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=3,lazy_refcounts=on,compat=0.10 x.qcow2 1M" \
                "-f qcow2 -o refcount_bits=8,compression_type=zstd,compat=0.10 x.qcow2 1M" \
                "-f qcow2 -o lazy_refcounts=on,compat=0.10 x.qcow2 1M" "-f raw -F raw x.raw 1M" \
                "-f qcow2 -o compat=0.10,backing_fmt=raw x.qcow2 1M"; do
        out=$(same create $args) || e="$e; $out"
    done
    [ -z "$e" ] && pass create || fail create "${e#; }"
}

t_info() {
    local e=""
    make_src src.qcow2
    qemu-img create -q -f qcow2 -b src.qcow2 -F qcow2 top.qcow2
    qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 3M
    qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k,lazy_refcounts=on pre.qcow2 10M
    qemu-img create -q -f raw r.img 1M
    qemu-img snapshot -c snap1 src.qcow2
    "$K" create -q -f qcow2 kv.qcow2 100M
    for f in src.qcow2 top.qcow2 v2.qcow2 pre.qcow2 r.img kv.qcow2; do
        for o in "" "--output=json" "--backing-chain" "--backing-chain --output=json"; do
            out=$(same info $o $f) || e="$e; $out"
        done
        "$K" info --output=json $f | python3 -c 'import json,sys; json.load(sys.stdin)' 2>/dev/null || e="$e; $f: json does not parse"
    done
    out=$(same info nonexist.qcow2) || e="$e; $out"
    [ -z "$e" ] && pass info || fail info "${e#; }"
}

t_check() {
    local e=""
    make_src src.qcow2
    qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k pre.qcow2 10M
    make_leaky leak.qcow2; make_corrupt cor.qcow2
    qemu-img snapshot -c s src.qcow2
    for f in src.qcow2 pre.qcow2 leak.qcow2 cor.qcow2; do
        for o in "" "--output=json"; do out=$(same check $o $f) || e="$e; $out"; done
        "$K" check --output=json $f 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); assert "check-errors" in d and "filename" in d' || e="$e; $f: json"
    done
    "$K" check leak.qcow2 >/dev/null 2>&1; [ $? = 3 ] || e="$e; leaks exit code not 3"
    "$K" check cor.qcow2 >/dev/null 2>&1; [ $? = 2 ] || e="$e; corruption exit code not 2"
    [ -z "$e" ] && pass check || fail check "${e#; }"
}

t_check_repair() {
    local e=""
    make_leaky leak.qcow2; make_corrupt cor.qcow2
    for r in leaks all; do
        for f in leak.qcow2 cor.qcow2; do
            for o in "" "--output=json"; do
                out=$(same_on_copies $f check $o -r $r @) || e="$e; $out"
            done
        done
    done
    cp leak.qcow2 l2.qcow2; "$K" check -r leaks l2.qcow2 >/dev/null 2>&1 && qcheck l2.qcow2 || e="$e; -r leaks did not repair"
    cp cor.qcow2 c2.qcow2; "$K" check -r all c2.qcow2 >/dev/null 2>&1 && qcheck c2.qcow2 || e="$e; -r all did not repair"
    # Leaks from a killed writer (qemu-io, SIGKILL mid-stream).
    qemu-img create -q -f qcow2 -o cluster_size=4k kill.qcow2 64M
    (qemu-io -c "$(for i in $(seq 0 400); do printf 'write -P 1 %dk 4k\n' $((i * 97 % 60000)); done | head -c 100000 | tr '\n' ';' | sed 's/;$//')" kill.qcow2 >/dev/null 2>&1 &
     p=$!; sleep 0.05; kill -9 $p 2>/dev/null; wait $p 2>/dev/null)
    "$K" check -r all kill.qcow2 >/dev/null 2>&1; qcheck kill.qcow2 || e="$e; killed writer image not repaired"
    [ -z "$e" ] && pass check-repair || fail check-repair "${e#; }"
}

t_convert() {
    local e=""
    make_src src.qcow2
    qemu-img convert -O raw src.qcow2 src.raw
    for args in "-O raw" "-O qcow2" "-O qcow2 -o cluster_size=4k" "-O qcow2 -o compat=0.10" \
                "-O qcow2 -o preallocation=metadata" "-p -O qcow2" "-W -O qcow2" "-f raw -O qcow2"; do
        rm -f out.img
        in=src.qcow2; case $args in *"-f raw"*) in=src.raw ;; esac
        "$K" convert $args $in out.img >/dev/null 2>err.txt || { e="$e; convert $args failed: $(head -1 err.txt)"; continue; }
        asan_clean err.txt || e="$e; $args: sanitizer"
        qemu-img compare src.qcow2 out.img >/dev/null 2>&1 || e="$e; $args: content differs"
        case $args in *qcow2*) qcheck out.img || e="$e; $args: check" ;; esac
    done
    # -n into an existing image, multiple sources.
    qemu-img create -q -f qcow2 pre.qcow2 64M
    "$K" convert -n -O qcow2 src.raw pre.qcow2 && qemu-img compare src.raw pre.qcow2 >/dev/null || e="$e; -n"
    "$K" convert -O raw src.raw src.qcow2 two.raw && [ "$(stat -c %s two.raw)" = $((128 << 20)) ] &&
        cmp -s <(head -c 64M two.raw) src.raw || e="$e; two sources"
    # Round trip raw -> qcow2 -> raw.
    head -c 3M /dev/urandom > rnd.raw
    "$K" convert -O qcow2 rnd.raw rt.qcow2 && "$K" convert -O raw rt.qcow2 rt.raw && cmp -s rnd.raw rt.raw || e="$e; round trip"
    # Sizes that are not cluster (or sector) multiples; unaligned concatenation.
    head -c $((3 * 1048576 + 512)) /dev/urandom > odd.raw; head -c 100000 /dev/urandom > small.raw
    for cs in 512 64k; do
        rm -f o1.qcow2 k2.qcow2 q2.qcow2
        "$K" convert -O qcow2 -o cluster_size=$cs odd.raw o1.qcow2 && qemu-img compare odd.raw o1.qcow2 >/dev/null && qcheck o1.qcow2 || e="$e; odd size $cs"
        "$K" convert -O qcow2 -o cluster_size=$cs small.raw odd.raw k2.qcow2 && qemu-img convert -O qcow2 small.raw odd.raw q2.qcow2 &&
            qemu-img compare q2.qcow2 k2.qcow2 >/dev/null && qcheck k2.qcow2 || e="$e; unaligned concatenation $cs"
    done
    out=$(same info small.raw) || e="$e; $out"
    out=$(same convert -O qcow2 nonexist.img x.qcow2) || e="$e; $out"
    [ -z "$e" ] && pass convert || fail convert "${e#; }"
}

t_convert_compressed() {
    local e=""
    make_src src.qcow2
    head -c 2M /dev/urandom > rnd.raw
    for cs in 512 4k 64k 2M; do
        rm -f c.qcow2
        "$K" convert -c -O qcow2 -o cluster_size=$cs src.qcow2 c.qcow2 2>err.txt || e="$e; -c $cs failed: $(head -1 err.txt)"
        qemu-img compare src.qcow2 c.qcow2 >/dev/null || e="$e; -c $cs content"
        qcheck c.qcow2 || e="$e; -c $cs check"
        qemu-img check --output=json c.qcow2 | grep -q compressed-clusters || e="$e; -c $cs: nothing compressed"
    done
    # zstd (-o compression_type=zstd): qemu-img reads what kvmbox writes.
    for cs in 512 4k 64k 2M; do
        rm -f z.qcow2
        "$K" convert -c -O qcow2 -o compression_type=zstd,cluster_size=$cs src.qcow2 z.qcow2 2>err.txt || e="$e; zstd $cs failed: $(head -1 err.txt)"
        asan_clean err.txt || e="$e; zstd $cs: sanitizer"
        qemu-img info z.qcow2 | grep -q "compression type: zstd" || e="$e; zstd $cs: not a zstd image"
        qemu-img compare src.qcow2 z.qcow2 >/dev/null || e="$e; zstd $cs content"
        qcheck z.qcow2 || e="$e; zstd $cs check"
        qemu-img check --output=json z.qcow2 | grep -q compressed-clusters || e="$e; zstd $cs: nothing compressed"
        "$K" convert -O raw z.qcow2 zback.raw && qemu-img compare src.qcow2 zback.raw >/dev/null || e="$e; zstd $cs: kvmbox reads it back"
    done
    # Really zstd: the first compressed cluster starts with a zstd frame magic.
    rm -f z.qcow2; "$K" convert -c -O qcow2 -o compression_type=zstd src.qcow2 z.qcow2
    python3 - z.qcow2 2>/dev/null <<'PY' || e="$e; zstd: first compressed cluster is not a zstd frame"
import struct, sys
f = open(sys.argv[1], 'rb'); h = f.read(112)
cb = struct.unpack('>I', h[20:24])[0]; l1off = struct.unpack('>Q', h[40:48])[0]
f.seek(l1off); l2off = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2off); ent = struct.unpack('>Q', f.read(8))[0]
assert ent & (1 << 62), hex(ent)
f.seek(ent & ((1 << (62 - (cb - 8))) - 1)); assert f.read(4) == b'\x28\xb5\x2f\xfd'
PY
    ks=$(stat -c %s z.qcow2); qemu-img convert -c -O qcow2 -o compression_type=zstd src.qcow2 qz.qcow2; qs=$(stat -c %s qz.qcow2)
    [ "$ks" -le $((qs * 3 / 2)) ] || e="$e; zstd size $ks vs qemu-img $qs"
    "$K" convert -c -O qcow2 -o compression_type=zstd rnd.raw zr.qcow2 && qemu-img compare rnd.raw zr.qcow2 >/dev/null && qcheck zr.qcow2 || e="$e; zstd incompressible"
    "$K" convert -c -O qcow2 rnd.raw cr.qcow2 && qemu-img compare rnd.raw cr.qcow2 >/dev/null && qcheck cr.qcow2 || e="$e; incompressible"
    "$K" convert -c -O qcow2 src.qcow2 c.qcow2 && "$K" convert -O raw c.qcow2 back.raw &&
        qemu-img compare src.qcow2 back.raw >/dev/null || e="$e; kvmbox reads its compressed image"
    ks=$(stat -c %s c.qcow2); qemu-img convert -c -O qcow2 src.qcow2 qc.qcow2; qs=$(stat -c %s qc.qcow2)
    [ "$ks" -le $((qs * 3 / 2)) ] || e="$e; compressed size $ks vs qemu-img $qs"
    out=$(same convert -c -O raw src.qcow2 x.raw) || e="$e; $out"
    [ -z "$e" ] && pass convert-compressed || fail convert-compressed "${e#; }"
}

t_convert_qemu_made() {
    local e=""
    qemu-img create -q -f raw base.raw 32M
    qemu-io -f raw -c 'write -P 0x61 0 4M' base.raw >/dev/null
    for o in "cluster_size=512" "cluster_size=4k" "cluster_size=64k,preallocation=metadata" \
             "cluster_size=2M" "compat=0.10" "preallocation=full" "lazy_refcounts=on"; do
        rm -f q.qcow2 k.raw
        qemu-img create -q -f qcow2 -o $o q.qcow2 32M
        qemu-io -c 'write -P 0x12 1M 3M' -c 'write -z 8M 1M' -c 'write -c -P 0x34 16M 2M' q.qcow2 >/dev/null 2>&1
        "$K" convert -O raw q.qcow2 k.raw 2>err.txt || e="$e; $o: $(head -1 err.txt)"
        qemu-img compare q.qcow2 k.raw >/dev/null || e="$e; $o: content"
        out=$(same map --output=json q.qcow2) || e="$e; $o: $out"
        out=$(same check q.qcow2) || e="$e; $o: $out"
    done
    qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2
    qemu-io -c 'write -P 0x77 2M 64k' ov.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b ov.qcow2 -F qcow2 ov2.qcow2
    "$K" convert -O qcow2 ov2.qcow2 flat.qcow2 && qemu-img compare ov2.qcow2 flat.qcow2 >/dev/null || e="$e; backing chain"
    [ -z "$e" ] && pass convert-qemu-made || fail convert-qemu-made "${e#; }"
}

t_resize() {
    local e=""
    make_src src.qcow2
    for args in "+1G" "-- -1M" "--shrink @ -1M" "2T" "--shrink @ 6M" "abc" "0"; do
        case $args in *@*) set -- resize $args ;; *) set -- resize @ $args ;; esac
        out=$(same_on_copies src.qcow2 "$@") || e="$e; $out"
        qcheck k_src.qcow2 || e="$e; $args: check"
        [ "$(qemu-img info --output=json q_src.qcow2 | grep virtual-size)" = "$(qemu-img info --output=json k_src.qcow2 | grep virtual-size)" ] || e="$e; $args: size"
        qemu-img compare q_src.qcow2 k_src.qcow2 >/dev/null || e="$e; $args: content"
    done
    qemu-img create -q -f raw r.raw 1M
    out=$(same_on_copies r.raw resize -f raw @ +1M) || e="$e; $out"
    cmp -s q_r.raw k_r.raw || e="$e; raw content"
    # Growing past the L1 table (4 KiB clusters: 512 entries cover 256 MiB... and more).
    qemu-img create -q -f qcow2 -o cluster_size=4k g.qcow2 1M
    qemu-io -c 'write -P 5 0 64k' g.qcow2 >/dev/null
    "$K" resize g.qcow2 10G >/dev/null && qcheck g.qcow2 && qemu-io -c 'read -P 5 0 64k' -c 'write -P 6 9G 64k' g.qcow2 >/dev/null && qcheck g.qcow2 || e="$e; L1 growth"
    # Shrunk below its backing file's end, then grown: the new area reads
    # zeros, not the backing file (version 3); version 2 cannot, and fails.
    qemu-img create -q -f raw bk.raw 4M; qemu-io -f raw -c 'write -P 0x30 0 4M' bk.raw >/dev/null
    for compat in 1.1 0.10; do
        for cs in 4k 64k; do
            qemu-img create -q -f qcow2 -o compat=$compat,cluster_size=$cs -b bk.raw -F raw ov.qcow2
            qemu-img resize -q --shrink ov.qcow2 1999872
            out=$(same_on_copies ov.qcow2 resize @ +3M) || e="$e; $compat/$cs: $out"
            qcheck k_ov.qcow2 || e="$e; $compat/$cs: check"
            qemu-img compare q_ov.qcow2 k_ov.qcow2 >/dev/null || e="$e; $compat/$cs: content"
        done
    done
    [ -z "$e" ] && pass resize || fail resize "${e#; }"
}

t_map() {
    local e=""
    make_src src.qcow2
    qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k pre.qcow2 10M
    qemu-img create -q -f raw r.raw 1M; qemu-io -f raw -c 'write -P 9 128k 192k' r.raw >/dev/null
    qemu-img create -q -f qcow2 -b r.raw -F raw ov.qcow2
    qemu-io -c 'write -z 0 64k' -c 'write 512k 4k' ov.qcow2 >/dev/null
    "$K" create -q -f qcow2 kv.qcow2 8M; qemu-io -c 'write 1M 1M' kv.qcow2 >/dev/null
    for f in src.qcow2 pre.qcow2 r.raw ov.qcow2 kv.qcow2; do
        for o in "--output=json" "--output=json --start-offset=1M --max-length=2M"; do
            out=$(same map $o $f) || e="$e; $out"
        done
        "$K" map --output=json $f | python3 -c 'import json,sys; d=json.load(sys.stdin); assert all(k in d[0] for k in ("start","length","depth","present","zero","data"))' 2>/dev/null || e="$e; $f json"
    done
    for f in pre.qcow2 r.raw ov.qcow2 kv.qcow2; do out=$(same map $f) || e="$e; $out"; done
    [ -z "$e" ] && pass map || fail map "${e#; }"
}

t_compare() {
    local e=""
    make_src src.qcow2
    qemu-img convert -O raw src.qcow2 src.raw
    cp src.raw d.raw; printf 'x' | dd of=d.raw bs=1 seek=$((5 * 1048576 + 1000)) conv=notrunc 2>/dev/null
    qemu-img create -q -f raw big.raw 65M; qemu-img convert -n -O raw src.qcow2 big.raw
    cp big.raw big2.raw; printf 'y' | dd of=big2.raw bs=1 seek=$((64 * 1048576 + 700)) conv=notrunc 2>/dev/null
    for p in "src.qcow2 src.raw" "src.qcow2 d.raw" "src.raw big.raw" "big2.raw src.qcow2" \
             "-s src.raw big.raw" "-q src.qcow2 d.raw" "src.qcow2 nonexist"; do
        out=$(same compare $p) || e="$e; $out"
    done
    [ -z "$e" ] && pass compare || fail compare "${e#; }"
}

t_snapshot() {
    local e=""
    qemu-img create -q -f qcow2 s.qcow2 16M
    qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 7 2M 64k' s.qcow2 >/dev/null
    "$K" snapshot -c s1 s.qcow2 || e="$e; -c failed"
    qcheck s.qcow2 || e="$e; after -c"
    qemu-img snapshot -l s.qcow2 | grep -q " s1 " || e="$e; qemu-img does not list kvmbox's snapshot"
    qemu-io -c 'write -P 2 0 512k' s.qcow2 >/dev/null
    qemu-img snapshot -c s2 s.qcow2
    out=$(same snapshot -l s.qcow2) || e="$e; $out"
    qemu-io -c 'write -P 3 0 256k' s.qcow2 >/dev/null
    "$K" snapshot -a s1 s.qcow2 && qcheck s.qcow2 || e="$e; -a s1"
    qemu-io -c 'read -P 1 0 1M' -c 'read -P 7 2M 64k' s.qcow2 | grep -q "read 65536/65536" || e="$e; -a s1 content"
    "$K" snapshot -a 2 s.qcow2 && qcheck s.qcow2 || e="$e; -a 2 (by id)"
    qemu-io -c 'read -P 2 0 512k' -c 'read -P 1 512k 512k' s.qcow2 | grep -c "^read" | grep -q 2 || e="$e; -a 2 content"
    "$K" snapshot -d s1 s.qcow2 && qcheck s.qcow2 || e="$e; -d s1"
    qemu-img snapshot -l s.qcow2 | grep -q " s1 " && e="$e; s1 still listed"
    qemu-img snapshot -a s2 s.qcow2 && qcheck s.qcow2 || e="$e; qemu-img -a after kvmbox -d"
    "$K" snapshot -d s2 s.qcow2 && qcheck s.qcow2 || e="$e; -d s2"
    [ -z "$(qemu-img snapshot -l s.qcow2)" ] || e="$e; snapshots left"
    for a in "-d nope" "-a nope" "-l"; do out=$(same_on_copies s.qcow2 snapshot $a @) || e="$e; $out"; done
    [ -z "$e" ] && pass snapshot || fail snapshot "${e#; }"
}

# Hostile images: garbage headers, tables past the end, huge sizes, loops.
t_hostile() {
    local e=""
    "$K" create -q -f qcow2 ok.qcow2 16M; qemu-io -c 'write -P 1 0 1M' ok.qcow2 >/dev/null
    poke() { cp ok.qcow2 h.qcow2; printf "$2" | dd of=h.qcow2 bs=1 seek=$1 conv=notrunc 2>/dev/null; }
    i=0
    for p in "4:\x00\x00\x00\x09" "20:\x00\x00\x00\x3f" "24:\xff\xff\xff\xff\xff\xff\xff\xff" \
             "36:\x7f\xff\xff\xff" "40:\x00\x00\x7f\x00\x00\x00\x00\x00" "48:\x00\x00\x00\x00\x00\x00\x10\x01" \
             "56:\xff\xff\xff\xff" "60:\x00\x01\x00\x00" "60:\x00\x00\x00\x05" "8:\x00\x00\x00\x00\x00\x00\x00\x70" \
             "16:\x00\x00\x10\x00" "72:\xff\xff\xff\xff\xff\xff\xff\xfe" "100:\xff\xff\xff\xf0" \
             "$((0x30000)):\x00\xff\xff\xff\xff\xff\x00\x00" "$((0x30000)):\x80\x00\x00\x00\x00\x00\x12\x34" \
             "$((0x20000)):\xff\xff\xff\xff"; do
        i=$((i + 1))
        poke "${p%%:*}" "${p#*:}"
        for v in "info h.qcow2" "check h.qcow2" "map --output=json h.qcow2" "convert -O raw h.qcow2 h.raw" "snapshot -l h.qcow2" "compare h.qcow2 ok.qcow2"; do
            timeout 20 "$K" $v >/dev/null 2>err.txt; rc=$?
            [ $rc = 124 ] && e="$e; #$i $v: hang"
            [ $rc -ge 128 ] && e="$e; #$i $v: crashed ($rc)"
            asan_clean err.txt || e="$e; #$i $v: sanitizer: $(grep -m1 'ERROR\|runtime error' err.txt)"
        done
    done
    printf 'QFI\xfb' > short.qcow2
    "$K" info short.qcow2 >/dev/null 2>err.txt; [ $? = 1 ] && grep -q "^kvmbox-img: " err.txt || e="$e; short file"
    qemu-img create -q -f qcow2 -b loop2.qcow2 -F qcow2 -u loop1.qcow2 1M
    qemu-img create -q -f qcow2 -b loop1.qcow2 -F qcow2 -u loop2.qcow2 1M
    timeout 20 "$K" info --backing-chain loop1.qcow2 >/dev/null 2>&1; [ $? = 1 ] || e="$e; backing loop"
    [ -z "$e" ] && pass hostile || fail hostile "${e#; }"
}

t_measure() {
    local e=""
    make_src src.qcow2; qemu-img convert -O raw src.qcow2 src.raw
    for args in "-O qcow2 src.qcow2" "-O raw src.qcow2" "--output=json -O qcow2 src.raw" \
                "-O qcow2 --size 1G" "-O qcow2 -o cluster_size=4k,preallocation=metadata --size 100G" \
                "-O qcow2 -o compat=0.10 --size 1G" "--size 1G" "-O qcow2 -o preallocation=full --size 10M" \
                "-O qcow2 -o refcount_bits=1,cluster_size=512 --size 100G" "-O qcow2 -o refcount_bits=64 --size 1G" \
                "-O qcow2 -o refcount_bits=3 --size 1G" "-O qcow2 -o refcount_bits=abc --size 1G" \
                "-O qcow2 -o refcount_bits=8,compat=0.10 --size 1G" "-O qcow2 -o compression_type=zstd src.qcow2"; do
        out=$(same measure $args) || e="$e; $out"
    done
    [ -z "$e" ] && pass measure || fail measure "${e#; }"
}

t_commit() {
    local e=""
    qemu-img create -q -f qcow2 base.qcow2 16M; qemu-io -c 'write -P 1 0 4M' base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
    qemu-io -c 'write -P 2 1M 1M' -c 'write -z 3M 64k' top.qcow2 >/dev/null
    qemu-img convert -O raw top.qcow2 expect.raw
    out=$(same_on_copies top.qcow2 info @ ) || true
    cp base.qcow2 base0.qcow2
    "$K" commit top.qcow2 >out.txt 2>&1 || e="$e; commit failed: $(head -1 out.txt)"
    grep -q "Image committed." out.txt || e="$e; message"
    qcheck base.qcow2 || e="$e; base check"
    qemu-img compare base.qcow2 expect.raw >/dev/null || e="$e; base content"
    qemu-img compare top.qcow2 expect.raw >/dev/null || e="$e; top content"
    [ -z "$e" ] && pass commit || fail commit "${e#; }"
}

t_rebase() {
    local e=""
    qemu-img create -q -f qcow2 b1.qcow2 16M; qemu-io -c 'write -P 1 0 4M' b1.qcow2 >/dev/null
    qemu-img create -q -f qcow2 b2.qcow2 16M; qemu-io -c 'write -P 9 0 2M' b2.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b b1.qcow2 -F qcow2 t.qcow2; qemu-io -c 'write -P 2 1M 64k' t.qcow2 >/dev/null
    qemu-img convert -O raw t.qcow2 expect.raw
    "$K" rebase -b b2.qcow2 -F qcow2 t.qcow2 2>err.txt || e="$e; rebase failed: $(head -1 err.txt)"
    qcheck t.qcow2 || e="$e; check"
    qemu-img info t.qcow2 | grep -q "backing file: b2.qcow2" || e="$e; backing not switched"
    qemu-img compare t.qcow2 expect.raw >/dev/null || e="$e; content changed"
    "$K" rebase -u -b b1.qcow2 -F qcow2 t.qcow2 && qemu-img info t.qcow2 | grep -q "backing file: b1.qcow2" || e="$e; -u"
    "$K" rebase -b "" t.qcow2 && qemu-img info t.qcow2 | grep -q "backing file" && e="$e; -b '' kept backing"
    qemu-img compare t.qcow2 expect.raw >/dev/null || e="$e; content after -b ''"
    qcheck t.qcow2 || e="$e; check after -b ''"
    [ -z "$e" ] && pass rebase || fail rebase "${e#; }"
}

# amend on copies by both tools: same output and exit code; kvmbox's copy
# then checks clean, reads as before, and qemu-img info says what it says of
# qemu-img's copy.
amend_cmp() {
    local img=$1; shift
    same_on_copies "$img" amend "$@" @ || return 1
    qcheck k_"$img" || return 1
    qemu-img compare "$img" k_"$img" >/dev/null 2>&1 || { echo "$img $*: content changed"; return 1; }
    [ "$(qemu-img info k_"$img" | grep -v 'disk size\|image:')" = "$(qemu-img info q_"$img" | grep -v 'disk size\|image:')" ] ||
        { echo "$img $*: info differs from qemu-img's"; return 1; }
}

t_amend() {
    local e=""
    qemu-img create -q -f qcow2 a.qcow2 16M; qemu-io -c 'write -P 1 0 1M' a.qcow2 >/dev/null
    "$K" amend -o lazy_refcounts=on a.qcow2 && qemu-img info a.qcow2 | grep -q "lazy refcounts: true" || e="$e; lazy_refcounts=on"
    qcheck a.qcow2 || e="$e; check"
    "$K" amend -o lazy_refcounts=off a.qcow2 && qemu-img info a.qcow2 | grep -q "lazy refcounts: false" || e="$e; lazy_refcounts=off"
    "$K" amend -o size=32M a.qcow2 && qemu-img info a.qcow2 | grep -q "(33554432 bytes)" || e="$e; size"
    qemu-img create -q -f qcow2 b.qcow2 1M
    out=$(same_on_copies a.qcow2 amend -o backing_file=b.qcow2,backing_fmt=qcow2 @) || e="$e; $out"
    out=$(same_on_copies a.qcow2 amend -o backing_fmt=raw,size=48M @) || e="$e; $out"
    qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 ov.qcow2
    for o in backing_file=b.qcow2,backing_fmt=qcow2 backing_file=b.qcow2 backing_file=c.qcow2,backing_fmt=qcow2; do
        out=$(same_on_copies ov.qcow2 amend -o $o @) || e="$e; ov $o: $out"
    done
    qcheck a.qcow2 || e="$e; check 2"
    out=$(same_on_copies a.qcow2 amend -o foo=bar @) || e="$e; $out"
    # size= over a longer backing file: the new area reads zeros (qemu-img
    # opens the chain for that, and fails without it).
    qemu-img create -q -f raw amb.raw 4M; qemu-io -f raw -c 'write -P 0x30 0 4M' amb.raw >/dev/null
    qemu-img create -q -f qcow2 -b amb.raw -F raw am.qcow2; qemu-img resize -q --shrink am.qcow2 1M
    out=$(same_on_copies am.qcow2 amend -o size=4M @) || e="$e; $out"
    qemu-img compare q_am.qcow2 k_am.qcow2 >/dev/null 2>&1 || e="$e; size= over a backing file: content"
    mv amb.raw amb.gone
    out=$(same_on_copies am.qcow2 amend -o lazy_refcounts=on @) || e="$e; missing backing: $out"
    mv amb.gone amb.raw

    # Images with what compat, refcount_bits and zero expansion must handle:
    # zero clusters (plain, allocated, in front of a backing file), compressed
    # clusters, snapshots, zstd, lazy refcounts, other widths, version 2.
    qemu-img create -q -f raw base.raw 16M; qemu-io -f raw -c 'write -P 0x61 0 16M' base.raw >/dev/null
    qemu-img create -q -f qcow2 p.qcow2 16M
    qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 1M' -c 'write -c -P 3 4M 64k' -c 'write -c -P 4 5M 64k' p.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2
    qemu-io -c 'write -P 1 0 64k' -c 'write -z 1M 1M' -c 'write -P 2 3M 64k' -c 'write -z -u 3M 64k' ov.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k pm.qcow2 4M
    qemu-io -c 'write -P 1 0 64k' -c 'write -z 32k 64k' pm.qcow2 >/dev/null
    qemu-img create -q -f qcow2 sn.qcow2 16M; qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 1M' sn.qcow2 >/dev/null
    qemu-img snapshot -c s1 sn.qcow2; qemu-io -c 'write -z 0 512k' -c 'write -c -P 5 4M 64k' sn.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.raw -F raw snb.qcow2; qemu-io -c 'write -z 2M 1M' snb.qcow2 >/dev/null
    qemu-img snapshot -c s1 snb.qcow2
    cp sn.qcow2 snr.qcow2; qemu-img resize -q snr.qcow2 32M
    qemu-img create -q -f qcow2 -o compression_type=zstd z.qcow2 16M; qemu-io -c 'write -P 1 0 1M' z.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o compression_type=zstd zc.qcow2 16M; qemu-io -c 'write -c -P 1 0 64k' zc.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o lazy_refcounts=on lz.qcow2 16M; qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 64k' lz.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw small.qcow2; qemu-io -c 'write -z 0 4k' small.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 16M; qemu-io -c 'write -P 1 0 1M' r8.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 16M; qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 3 4M 64k' v2.qcow2 >/dev/null
    qemu-img snapshot -c s1 v2.qcow2
    for f in p ov pm sn snb snr z zc lz small r8; do
        for o in compat=0.10 compat=1.1 refcount_bits=1 refcount_bits=2 refcount_bits=64 lazy_refcounts=on,compat=0.10 \
                 compat=0.10,refcount_bits=16 refcount_bits=8,compat=0.10; do
            out=$(amend_cmp $f.qcow2 -o $o) || e="$e; $out"
        done
    done
    for o in compat=1.1 compat=0.10 refcount_bits=8 compat=1.1,refcount_bits=4 compat=1.1,lazy_refcounts=on lazy_refcounts=on; do
        out=$(amend_cmp v2.qcow2 -o $o) || e="$e; $out"
    done
    # Snapshots keep their data through a downgrade and a width change.
    for f in sn snb; do
        for o in compat=0.10 refcount_bits=4; do
            cp $f.qcow2 k.qcow2; "$K" amend -o $o k.qcow2; qemu-img snapshot -a s1 k.qcow2
            cp $f.qcow2 q.qcow2; qemu-img snapshot -a s1 q.qcow2
            qemu-img compare q.qcow2 k.qcow2 >/dev/null 2>&1 && qcheck k.qcow2 >/dev/null || e="$e; $f $o: snapshot content"
        done
    done
    # The header is qemu-img's, byte for byte, after a round trip.
    cp ov.qcow2 rt.qcow2; "$K" amend -o compat=0.10 rt.qcow2; cp rt.qcow2 rtq.qcow2
    "$K" amend -o compat=1.1 rt.qcow2; qemu-img amend -o compat=1.1 rtq.qcow2
    cmp -s <(head -c 65536 rt.qcow2) <(head -c 65536 rtq.qcow2) || e="$e; upgraded header cluster differs from qemu-img's"
    qemu-img amend -o compat=0.10 rtq.qcow2; "$K" amend -o compat=0.10 rt.qcow2
    cmp -s <(head -c 65536 rt.qcow2) <(head -c 65536 rtq.qcow2) || e="$e; downgraded header cluster differs from qemu-img's"
    # kvmbox reads (and writes) what it amended.
    for o in compat=0.10 refcount_bits=2 refcount_bits=64; do
        cp p.qcow2 w.qcow2; "$K" amend -o $o w.qcow2 && "$K" convert -O raw w.qcow2 w.raw && qemu-img compare p.qcow2 w.raw >/dev/null &&
            "$K" bench -w -c 500 -s 4k -S 64k w.qcow2 >/dev/null && qcheck w.qcow2 >/dev/null || e="$e; kvmbox after $o"
    done
    # Refusals and option errors: qemu-img's text and exit code.
    for o in cluster_size=64k cluster_size=4k cluster_size=abc compression_type=zstd preallocation=metadata extended_l2=on \
             encryption=on encrypt.format=luks data_file=x data_file_raw=on compat=0.11 compat= refcount_bits=3 \
             refcount_bits=abc refcount_bits=08 refcount_bits=99999999999999999999 refcount_bits=3,compat=0.11 \
             cluster_size=4k,refcount_bits=abc refcount_bits=abc,cluster_size=4k foo=bar,cluster_size=4k \
             lazy_refcounts=foo size=abc encrypt.state=on; do
        out=$(same_on_copies p.qcow2 amend -o $o @) || e="$e; $out"
    done
    out=$(same amend -o compat=0.10 nonexist.qcow2) || e="$e; $out"
    # Killed mid-way: the old or the new image, leaks at worst (check 0 or 3).
    qemu-img create -q -f raw zb.raw 256M
    qemu-img create -q -f qcow2 -o cluster_size=4k -b zb.raw -F raw big.qcow2
    qemu-io -c 'write -P 9 0 64M' -c 'write -z 64M 192M' big.qcow2 >/dev/null
    for o in compat=0.10 refcount_bits=1; do
        for d in 0.01 0.02 0.03 0.05 0.1 0.2; do
            cp big.qcow2 kill.qcow2
            "$K" amend -o $o kill.qcow2 >/dev/null 2>&1 & p=$!; sleep $d; kill -9 $p 2>/dev/null; wait $p 2>/dev/null
            qemu-img check kill.qcow2 >/dev/null 2>&1; rc=$?
            [ $rc = 0 ] || [ $rc = 3 ] || e="$e; $o killed after ${d}s: check exit $rc"
            qemu-img compare big.qcow2 kill.qcow2 >/dev/null 2>&1 || e="$e; $o killed after ${d}s: content"
        done
    done
    [ -z "$e" ] && pass amend || fail amend "${e#; }"
}

t_bench() {
    local e=""
    qemu-img create -q -f qcow2 b.qcow2 64M
    for args in "-c 2000 -d 8 -s 4k" "-w -c 2000 -s 4k -S 64k" "-c 500 -s 64k -o 1M" "-c 200 -f qcow2 -t none -n -s 4k"; do
        out=$("$K" bench $args b.qcow2 2>&1) || e="$e; bench $args failed: $out"
        echo "$out" | head -1 | grep -q "^Sending [0-9]* .*requests" || e="$e; $args: first line '$(echo "$out" | head -1)'"
        echo "$out" | tail -1 | grep -q "^Run completed in [0-9.]* seconds.$" || e="$e; $args: last line"
    done
    qcheck b.qcow2 || e="$e; check after writes"
    [ -z "$e" ] && pass bench || fail bench "${e#; }"
}

for t in $TESTS; do
    fn=t_${t//-/_}
    if declare -F "$fn" >/dev/null; then
        mkdir -p "$D/$t" && cd "$D/$t" && "$fn"; cd "$D"
    else
        fail "$t" "no such test"
    fi
done
exit $failed
