# shellcheck shell=bash
# Sourced by tests/img/run.sh.
# tests: locks
# QEMU's image locks: while qemu-io (QEMU's block layer) writes an image,
# kvmbox-img refuses what qemu-img refuses, with the same words and exit
# code, and -U (force share) reads it anyway.
t_locks() {
    local e="" pid out
    qemu-img create -q -f qcow2 l.qcow2 4M
    qemu-img create -q -f raw l.raw 4M
    local common="info @|info -U @|map --output=json @|resize @ +1M|convert -O raw @ out.raw"
    common+="|convert -U -O raw @ out.raw|compare @ @"
    local qcow2_only="|check @|check -r all @|snapshot -c s @|amend -o lazy_refcounts=on @"
    qcow2_only+="|rebase -u -b '' @|commit @"
    for img in l.qcow2 l.raw; do
        qemu-io -f "${img#l.}" -c 'sleep 20000' "$img" >/dev/null 2>&1 &
        pid=$!
        sleep 0.5
        local list=$common
        [ "$img" = l.qcow2 ] && list+=$qcow2_only
        local IFS='|'
        for args in $list; do
            unset IFS
            eval "set -- ${args//@/$img}"
            out=$(same "$@") || e="$e; $img: $out"
        done
        # bench prints timings: only its exit code and first line compare.
        local qb kb
        local rc
        qemu-img bench -c 10 -w "$img" >b.out 2>&1; rc=$?; qb="$(head -n 4 b.out) rc=$rc"
        "$K" bench -c 10 -w "$img" >b.out 2>&1; rc=$?; kb="$(head -n 4 b.out) rc=$rc"
        [ "${qb//qemu-img/TOOL}" = "${kb//kvmbox-img/TOOL}" ] ||
            e="$e; $img: bench -w: '$kb', qemu-img '$qb'"
        kill "$pid"; wait "$pid" 2>/dev/null
        "$K" info "$img" >/dev/null 2>&1 || e="$e; $img still locked after qemu-io exited"
    done
    [ -z "$e" ] && pass locks || fail locks "${e#; }"
}
