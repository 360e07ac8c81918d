#!/usr/bin/env bash
# kvmbox-img against qemu-img: `bench` on the same image with the same
# parameters, and `convert` throughput. A benchmark, not a test: it prints
# a table (times in seconds, best of REPS, and qemu/kvmbox ratios: > 1
# means kvmbox-img is faster) and judges nothing. bench rows use the time
# each tool reports ("Run completed in X seconds."), convert rows the wall
# time of the whole command.
# Usage: bench/img_bench.sh [-d DIR] [-n REPS] [-c COUNT] [-s MIB]
#   DIR   scratch directory (default $BENCH_DIR or /var/tmp)
#   REPS  runs per row, best kept (default 3)
#   COUNT requests per bench row (default 20000)
#   MIB   image size (default 1024)
# Environment: KVMBOX_IMG (default build/kvmbox-img).
set -u
cd "$(dirname "$0")/.." || exit 1
K=${KVMBOX_IMG:-build/kvmbox-img}
case $K in /*) ;; *) K=$PWD/$K ;; esac
dir=${BENCH_DIR:-/var/tmp}; reps=3; count=20000; mib=1024
while getopts d:n:c:s: o; do
    case $o in d) dir=$OPTARG ;; n) reps=$OPTARG ;; c) count=$OPTARG ;; s) mib=$OPTARG ;;
               *) sed -n '2,12p' "$0"; exit 1 ;; esac
done
[ -x "$K" ] || { echo "img_bench: $K not built (make build/kvmbox-img)"; exit 1; }
command -v qemu-img >/dev/null || { echo "img_bench: qemu-img not installed"; exit 1; }
W=$(mktemp -d "$dir/kvmbox-img-bench.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
TMO=120

# best TOOL PREP -- ARGS...: best wall time of REPS runs; PREP (a shell
# snippet) runs before each timed run (fresh images for write rows).
best() {
    local tool=$1 prep=$2; shift 3
    local b="" t s e
    for _ in $(seq "$reps"); do
        (cd "$W" && eval "$prep") || return 1
        s=$(date +%s.%N)
        (cd "$W" && timeout $TMO "$tool" "$@" >"$W/out.txt" 2>&1) || { echo "-"; cat "$W/out.txt" >&2; return; }
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc -l)
        # bench rows: the tool's own timing (no process start-up).
        if grep -q "^Run completed in" "$W/out.txt"; then
            t=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p' "$W/out.txt")
        fi
        if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
    done
    printf '%.3f' "$b"
}

row() {   # row NAME BYTES PREP ARGS...
    local name=$1 bytes=$2 prep=$3; shift 4
    local q k
    q=$(best qemu-img "$prep" -- "$@")
    k=$(best "$K" "$prep" -- "$@")
    if [ "$q" = - ] || [ "$k" = - ]; then
        printf '%-40s %10s %10s %8s %10s\n' "$name" "$q" "$k" "-" "-"
        return
    fi
    local r mbs
    r=$(echo "$q / $k" | bc -l)
    mbs=$(echo "$bytes / $k / 1048576" | bc -l)
    printf '%-40s %10s %10s %8.2f %10.0f\n' "$name" "$q" "$k" "$r" "$mbs"
}

fresh='rm -f b.qcow2; qemu-img create -q -f qcow2 b.qcow2 '"${mib}M"
prealloc='rm -f b.qcow2; qemu-img create -q -f qcow2 -o preallocation=metadata b.qcow2 '"${mib}M"
full='[ -f full.qcow2 ] || { qemu-img create -q -f qcow2 full.qcow2 '"${mib}M"' && qemu-io -c "write -P 7 0 '"${mib}M"'" full.qcow2 >/dev/null; }'
# An allocated image with an internal snapshot: every write copies the
# cluster (and first its L2 table) that the snapshot shares.
snap="$full"'; rm -f s.qcow2; cp full.qcow2 s.qcow2 && qemu-img snapshot -c s s.qcow2'
# 4k "random": qemu-img bench walks offsets (start + i*step) % size, so a
# step of 1 MiB + 4 KiB scatters requests over the whole image.
scat=$((1048576 + 4096))
c64=$((count / 4))

printf '# kvmbox-img vs qemu-img %s (%s MiB images in %s, best of %s)\n' \
    "$(qemu-img --version | head -1 | awk '{print $3}')" "$mib" "$dir" "$reps"
printf '%-40s %10s %10s %8s %10s\n' "row" "qemu-img s" "kvmbox s" "q/k" "kvmbox MB/s"
row "bench 4k scattered read (allocated)"  $((count * 4096)) "$full" -- bench -c "$count" -s 4k -S $scat full.qcow2
row "bench 4k scattered write, fresh"      $((count * 4096)) "$fresh" -- bench -w -c "$count" -s 4k -S $scat b.qcow2
row "bench 4k scattered write, prealloc"   $((count * 4096)) "$prealloc" -- bench -w -c "$count" -s 4k -S $scat b.qcow2
row "bench 64k sequential read"            $((c64 * 65536)) "$full" -- bench -c "$c64" -s 64k full.qcow2
row "bench 64k sequential write, fresh"    $((c64 * 65536)) "$fresh" -- bench -w -c "$c64" -s 64k b.qcow2
row "bench 64k sequential write, prealloc" $((c64 * 65536)) "$prealloc" -- bench -w -c "$c64" -s 64k b.qcow2
row "bench 4k scattered write, snapshot COW" $((count * 4096)) "$snap" -- bench -w -c "$count" -s 4k -S $scat s.qcow2
row "bench 4k read, depth 1"               $((count * 4096)) "$full" -- bench -d 1 -c "$count" -s 4k -S $scat full.qcow2
row "convert qcow2 -> raw"                 $((mib << 20)) "$full; rm -f o.img" -- convert -O raw full.qcow2 o.img
row "convert qcow2 -> qcow2"               $((mib << 20)) "$full; rm -f o.img" -- convert -O qcow2 full.qcow2 o.img
row "convert -c qcow2 -> qcow2 (zlib)"     $((mib << 20)) "$full; rm -f o.img" -- convert -c -O qcow2 full.qcow2 o.img
row "convert -c qcow2 -> qcow2 (zstd)"     $((mib << 20)) "$full; rm -f o.img" -- convert -c -O qcow2 -o compression_type=zstd full.qcow2 o.img
