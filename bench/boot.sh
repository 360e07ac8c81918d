#!/usr/bin/env bash
# Boot benchmark: kvmbox against qemu-system-x86_64 -M microvm and -M pc,
# side by side in one run, same kernel, same kernel command line, same
# -m/-smp. A benchmark, not a test: it prints a table and exits 0 unless it
# could not run at all. See bench/README.md for what each number means.
#
# Usage: bench/boot.sh [-n REPS] [-k vmlinux|bzImage] [-v "kvmbox microvm pc"]
# Environment (same meaning as the options, plus):
#   KVMBOX            kvmbox binary (default build/kvmbox)
#   QEMU              qemu binary (default qemu-system-x86_64)
#   BENCH_REPS        repetitions per VMM (default 1: a boot takes minutes
#                     on a host whose KVM emulates ring 0)
#   BENCH_KERNEL      vmlinux (PVH ELF, default) or bzImage (LZ4)
#   BENCH_VMMS        which VMMs, in order (default "kvmbox microvm pc")
#   BENCH_MEM         guest RAM in MiB (default 256)
#   BENCH_SMP         vCPUs (default 1)
#   BENCH_TIMEOUT     bound on one boot to Run /init, seconds (default 900)
#   BENCH_STRACE_TIMEOUT  bound on one strace run to KVM_RUN (default 120)
#   BENCH_QEMU_CPU    -cpu for qemu (default: none given, QEMU's default
#                     model; "host" hangs the second vCPU's bring-up with
#                     -smp 2 on a kvm_pvm host)
#   BENCH_LPJ         lpj= (default 1000000)
#   BENCH_LOG_DIR     keep each run's serial log, stamps, smaps copy and
#                     strace output there (default: kept nowhere)
set -euo pipefail

# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../tests/lib.sh"

reps=${BENCH_REPS:-1}
kimage=${BENCH_KERNEL:-vmlinux}
vmms=${BENCH_VMMS:-kvmbox microvm pc}
while getopts "n:k:v:h" opt; do
    case $opt in
        n) reps=$OPTARG ;;
        k) kimage=$OPTARG ;;
        v) vmms=$OPTARG ;;
        *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
case $kimage in vmlinux|bzImage) ;; *) echo "boot.sh: -k vmlinux|bzImage" >&2; exit 2 ;; esac
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "boot.sh: -n needs a positive count" >&2; exit 2; }

kvmbox=$(kvmbox_bin build/kvmbox)
qemu=${QEMU:-qemu-system-x86_64}
mem=${BENCH_MEM:-256}
smp=${BENCH_SMP:-1}
boot_timeout=${BENCH_TIMEOUT:-900}
strace_timeout=${BENCH_STRACE_TIMEOUT:-120}
qemu_cpu=()
[ -z "${BENCH_QEMU_CPU:-}" ] || qemu_cpu=(-cpu "$BENCH_QEMU_CPU")
lpj=${BENCH_LPJ:-1000000}
log_dir=${BENCH_LOG_DIR:-}

problem=$(kvm_problem)
[ -z "$problem" ] || { echo "boot.sh: $problem" >&2; exit 1; }
need=()
command -v strace >/dev/null || need+=(strace)
case " $vmms " in *" microvm "*|*" pc "*)
    command -v "$qemu" >/dev/null || need+=(qemu-system-x86) ;;
esac
if [ ${#need[@]} -gt 0 ]; then
    note "installing ${need[*]}"
    timeout 300 apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${need[@]}" >&2
fi
case " $vmms " in *" kvmbox "*)
    command -v "$kvmbox" >/dev/null ||
        { echo "boot.sh: $kvmbox not found (make, or set KVMBOX)" >&2; exit 1; } ;;
esac

kdir=$("$top/tests/linux/build-kernel.sh")
initrd=$("$top/tests/linux/make-initramfs.sh")
kernel=$kdir/$kimage

# The workarounds for a KVM that emulates ring 0 (kvm-on-this-host.md),
# shared with scripts/boot-default-vm.sh; the list below if it is missing.
workarounds="noxsave clearcpuid=cx16,smap,smep,pku,umip,popcnt,fsgsbase,rdpid"
workarounds+=",rdrand,rdseed,bmi1,bmi2,movbe,fsrm,avx,avx2,avx512f,xsave,xsaveopt"
workarounds+=",xsavec,xsaves,pcid,invpcid,clflushopt,clwb,abm,sha_ni,aes,pclmulqdq"
workarounds+=",f16c,fma,adx,gfni,vaes,vpclmulqdq,lahf_lm,sse4_1,sse4_2,ssse3"
if [ -s "$top/tests/linux/emulated-host.cmdline" ]; then
    workarounds=$(tr '\n' ' ' <"$top/tests/linux/emulated-host.cmdline")
    workarounds=${workarounds% }
fi
append="console=ttyS0 earlyprintk=serial 8250.nr_uarts=1 lpj=$lpj $workarounds panic=-1"

tmp=$(mktemp -d)
pids=()      # everything started in the background, killed at exit
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$? p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop PID: TERM, a bounded wait, then KILL; reaps it.
stop() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=() q
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    pids=("${keep[@]}")
}

# vmm_cmd NAME SERIALFILE DLOG: the command line of one VMM in ${cmd[@]}.
vmm_cmd() {
    local common=(-m "$mem" -smp "$smp" -kernel "$kernel" -initrd "$initrd"
                  -append "$append" -display none -serial "file:$2" -no-reboot)
    case $1 in
        kvmbox)  cmd=("$kvmbox" "${common[@]}" -D "$3") ;;
        microvm)
            local m=microvm,rtc=off
            # A PVH vmlinux needs no option ROM; a bzImage needs linuxboot.
            [ "$kimage" = vmlinux ] && m+=,x-option-roms=off
            cmd=("$qemu" -enable-kvm "${qemu_cpu[@]}" -M "$m" "${common[@]}") ;;
        pc)      cmd=("$qemu" -enable-kvm "${qemu_cpu[@]}" -M pc "${common[@]}") ;;
        *) echo "boot.sh: unknown VMM '$1' (kvmbox, microvm, pc)" >&2; exit 2 ;;
    esac
}

# smaps_overhead FILE: "total_rss_kib guest_rss_kib" from a /proc/PID/smaps
# copy. Guest RAM = the mapping(s) whose size is -m (up to 4 MiB more for
# alignment or guard pages); the largest Rss of those is the touched RAM.
smaps_overhead() {
    awk -v m=$((mem * 1024)) '
        /^[0-9a-f]+-[0-9a-f]+ / { size = -1; next }
        /^Size:/ { size = $2; next }
        /^Rss:/  { total += $2
                   if (size >= m && size <= m + 4096 && $2 > guest) guest = $2 }
        END { printf "%d %d\n", total, guest }' "$1"
}

# smaps_top FILE: the 5 largest mappings by Rss other than guest RAM, to
# show where a VMM's overhead goes.
smaps_top() {
    awk -v m=$((mem * 1024)) '
        /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "") ? "[anon]" : $6; size = -1; next }
        /^Size:/ { size = $2; next }
        /^Rss:/  { if (!(size >= m && size <= m + 4096) && $2 > 0) rss[name] += $2 }
        END { for (n in rss) printf "%8d KiB  %s\n", rss[n], n }' "$1" |
        sort -rn | head -n 5
}

# boot_run NAME REP: one timed boot to Run /init; appends a result line
# "NAME REP first_s init_s total_rss_kib guest_rss_kib" to $tmp/results.
boot_run() {
    local name=$1 rep=$2 dir=$tmp/$1.$2
    mkdir -p "$dir"
    : >"$dir/serial.log"
    vmm_cmd "$name" "$dir/serial.log" "$dir/D.log"
    note "$name #$rep: ${cmd[*]}"
    # Every serial line with the time it reached the file; tail -F follows
    # with inotify, so the stamp is milliseconds after the write.
    # $! is tail itself; the stamper ends at EOF when tail is stopped.
    tail -n +1 -F "$dir/serial.log" 2>/dev/null > >(
        while IFS= read -r line; do
            printf '%s %s\n' "$EPOCHREALTIME" "${line%$'\r'}"
        done >"$dir/stamped") &
    local tailer=$!
    pids+=("$tailer")
    # The subshell records the start time and then becomes the VMM, so $!
    # is the VMM's own pid (for /proc/PID/smaps).
    ( echo "$EPOCHREALTIME" >"$dir/t0"; exec "${cmd[@]}" ) \
        </dev/null >"$dir/out" 2>"$dir/err" &
    local vm=$!
    pids+=("$vm")
    local deadline=$(( SECONDS + boot_timeout )) last_sample=0 seen_init=
    while kill -0 "$vm" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        if grep -q 'Run /init' "$dir/stamped" 2>/dev/null; then
            cp "/proc/$vm/smaps" "$dir/smaps.init" 2>/dev/null || true
            seen_init=1
            break
        fi
        if [ $(( SECONDS - last_sample )) -ge 2 ]; then
            cp "/proc/$vm/smaps" "$dir/smaps.last" 2>/dev/null || true
            last_sample=$SECONDS
        fi
        sleep 0.02
    done
    [ -n "$seen_init" ] || note "$name #$rep: no 'Run /init' (VMM alive: $(kill -0 "$vm" 2>/dev/null && echo yes || echo no), see below)"
    stop "$vm"
    sleep 0.2
    stop "$tailer"
    local t0 first init
    t0=$(cat "$dir/t0")
    first=$(awk -v t0="$t0" '/Linux version/ { printf "%.3f", $1 - t0; exit }' "$dir/stamped")
    init=$(awk -v t0="$t0" '/Run \/init/ { printf "%.3f", $1 - t0; exit }' "$dir/stamped")
    local smaps=$dir/smaps.init
    [ -s "$smaps" ] || smaps=$dir/smaps.last
    local rss="- -"
    [ -s "$smaps" ] && rss=$(smaps_overhead "$smaps")
    echo "$name $rep ${first:--} ${init:--} $rss" >>"$tmp/results"
    note "$name #$rep: first line ${first:--} s, Run /init ${init:--} s, rss/guest KiB $rss"
    if [ -s "$smaps" ]; then
        note "$name #$rep: largest non-guest Rss (summed by mapped file):"
        smaps_top "$smaps" | sed 's/^/#   /' >&2
    fi
    if [ -z "$seen_init" ]; then
        note "$name #$rep: last serial lines / stderr:"
        tail -n 5 "$dir/serial.log" | sed 's/^/#   /' >&2
        tail -n 5 "$dir/err" | sed 's/^/#   /' >&2
    fi
    if [ -s "$dir/D.log" ]; then
        grep 'boot-timer' "$dir/D.log" | sed "s/^/# $name -D: /" >&2 || true
    fi
    keep "$dir"
}

# keep DIR: copy a run's files to $BENCH_LOG_DIR when set.
keep() {
    [ -n "$log_dir" ] || return 0
    mkdir -p "$log_dir"
    cp -r "$1" "$log_dir/"
}

# strace_run NAME REP: time from execve to the first KVM_RUN ioctl, under
# strace -f; the VM is stopped as soon as KVM_RUN shows up.
strace_run() {
    local name=$1 rep=$2 dir=$tmp/$1.$2.strace
    mkdir -p "$dir"
    vmm_cmd "$name" "$dir/serial.log" "$dir/D.log"
    strace -f -ttt -e trace=execve,ioctl -o "$dir/trace" "${cmd[@]}" \
        </dev/null >"$dir/out" 2>"$dir/err" &
    local st=$!
    pids+=("$st")
    local deadline=$(( SECONDS + strace_timeout ))
    while kill -0 "$st" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        grep -q 'KVM_RUN' "$dir/trace" 2>/dev/null && break
        sleep 0.05
    done
    # The traced VMM: the pid of the first line (strace kills the tracees
    # it started when it gets TERM; this makes sure).
    local vm
    vm=$(awk 'NR == 1 { print $1; exit }' "$dir/trace" 2>/dev/null || true)
    stop "$st"
    if [ -n "$vm" ]; then kill -KILL "$vm" 2>/dev/null || true; fi
    local ms
    ms=$(awk '$3 ~ /^execve\(/ && !t0 { t0 = $2 }
              /KVM_RUN/ && t0 { printf "%.1f", ($2 - t0) * 1000; exit }' "$dir/trace")
    echo "$name $rep ${ms:--}" >>"$tmp/kvmrun"
    note "$name #$rep: first KVM_RUN ${ms:--} ms after execve (strace)"
    keep "$dir"
}

note "kernel $kernel, initrd $initrd, -m $mem -smp $smp, $reps repetition(s)"
: >"$tmp/results"
: >"$tmp/kvmrun"
for rep in $(seq "$reps"); do
    for v in $vmms; do
        strace_run "$v" "$rep"
        boot_run "$v" "$rep"
    done
done

# median COLUMN NAME FILE: median of a column over the repetitions ("-" if none).
median() {
    awk -v c="$1" -v n="$2" '$1 == n && $c != "-" { print $c }' "$3" | sort -g |
        awk '{ v[NR] = $1 }
             END { if (!NR) { print "-"; exit }
                   if (NR % 2) print v[(NR + 1) / 2]
                   else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-";
                                      else printf "%.2f", a / b }'
}

declare -A val
for v in $vmms; do
    val[$v.first]=$(median 3 "$v" "$tmp/results")
    val[$v.init]=$(median 4 "$v" "$tmp/results")
    tot=$(median 5 "$v" "$tmp/results")
    gst=$(median 6 "$v" "$tmp/results")
    val[$v.kvmrun]=$(median 3 "$v" "$tmp/kvmrun")
    if [ "$tot" != - ] && [ "$gst" != - ]; then
        val[$v.rss]=$(awk -v a="$tot" 'BEGIN { printf "%.1f", a / 1024 }')
        val[$v.guest]=$(awk -v a="$gst" 'BEGIN { printf "%.1f", a / 1024 }')
        val[$v.over]=$(awk -v a="$tot" -v b="$gst" 'BEGIN { printf "%.1f", (a - b) / 1024 }')
    else
        val[$v.rss]=-; val[$v.guest]=-; val[$v.over]=-
    fi
done

echo
echo "boot benchmark: $kimage, -m $mem -smp $smp, median of $reps run(s), $(uname -r)"
header=$(printf '%-28s' metric)
for v in $vmms; do header+=$(printf ' %10s' "$v"); done
ratios=()
case " $vmms " in *" kvmbox "*)
    for v in $vmms; do [ "$v" = kvmbox ] || ratios+=("$v"); done ;;
esac
for q in "${ratios[@]}"; do header+=$(printf ' %14s' "kvmbox/$q"); done
echo "$header"
for row in "first serial line (s):first" "Run /init (s):init" \
           "first KVM_RUN (ms):kvmrun" "VMM RSS total (MiB):rss" \
           "guest RAM touched (MiB):guest" "VMM overhead (MiB):over"; do
    label=${row%%:*} key=${row##*:}
    line=$(printf '%-28s' "$label")
    for v in $vmms; do line+=$(printf ' %10s' "${val[$v.$key]}"); done
    for q in "${ratios[@]}"; do
        line+=$(printf ' %14s' "$(ratio "${val[kvmbox.$key]}" "${val[$q.$key]}")")
    done
    echo "$line"
done
