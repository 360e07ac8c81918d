# Sourced by tests/img/run.sh: commit -b, convert -l, snapshot -a growing
# the active L1 table, each against qemu-img on the same inputs.
# tests: commit-base convert-snapshot snapshot-apply-grow

# Same size and bytes, without reading the holes of big sparse files.
same_raw() { [ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] && qemu-img compare -f raw -F raw "$1" "$2" >/dev/null 2>&1; }
# A qcow2 header field: hdr_field FILE OFFSET BYTES (big endian, decimal).
hdr_field() { local h; h=$(od -A n -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'); echo $((16#$h)); }

# ---- commit -b -----------------------------------------------------------

# chain/: base.qcow2 <- mid.qcow2 <- top.qcow2 (data, zeros, compressed
# clusters at every level, overlapping).
make_chain() {
    mkdir -p chain && cd chain || return 1
    qemu-img create -q -f qcow2 base.qcow2 16M
    qemu-io -c 'write -P 1 0 4M' -c 'write -P 7 8M 1M' base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    qemu-io -c 'write -P 2 1M 1M' -c 'write -z 8M 256k' -c 'write -c -P 4 12M 64k' mid.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    qemu-io -c 'write -P 3 1536k 1M' -c 'write -z 3M 64k' -c 'write -c -P 5 14M 128k' top.qcow2 >/dev/null
    cd ..
}

# Each tool commits in its own copy of chain/ (q/, k/), from directory
# `from` (relative to the copy; "." or ".."), same arguments; @ in an
# argument becomes the copy's absolute path. Compares messages and exit
# codes, then each image's content against qemu-img's result, leaves check
# clean, and the images qemu-img left byte-identical must be so here too.
commit_both() {
    local from=$1; shift
    rm -rf q k; mkdir q k; cp chain/* q/; cp chain/* k/
    mkdir -p q/sub k/sub; mv q/*.qcow2 q/sub/; mv k/*.qcow2 k/sub/
    local qa=() ka=() x a b ra rb
    for x in "$@"; do qa+=("${x//@/$PWD/q/sub}"); ka+=("${x//@/$PWD/k/sub}"); done
    a=$(cd q/sub/"$from" && qemu-img commit "${qa[@]}" 2>&1); ra=$?
    b=$(cd k/sub/"$from" && "$K" commit "${ka[@]}" 2>&1); rb=$?
    a=${a//qemu-img/TOOL}; a=${a//$PWD\/q/DIR}; b=${b//kvmbox-img/TOOL}; b=${b//$PWD\/k/DIR}
    [ "$ra" = "$rb" ] || { echo "commit $*: exit $rb, qemu-img $ra ($b)"; return 1; }
    [ "$a" = "$b" ] || { echo "commit $*: output '$b', qemu-img '$a'"; return 1; }
    for x in base mid top; do
        qemu-img compare -f qcow2 -F qcow2 q/sub/$x.qcow2 k/sub/$x.qcow2 >/dev/null 2>&1 ||
            { echo "commit $*: $x.qcow2 content differs from qemu-img's"; return 1; }
        qcheck k/sub/$x.qcow2 || return 1
        if cmp -s q/sub/$x.qcow2 chain/$x.qcow2 && ! cmp -s k/sub/$x.qcow2 chain/$x.qcow2; then
            echo "commit $*: $x.qcow2 changed (qemu-img leaves it as it was)"; return 1
        fi
    done
}

t_commit_base() {
    local e="" out
    make_chain || { fail commit-base "setup"; return; }
    qemu-img convert -O raw chain/top.qcow2 top.raw
    # Into the bottom: the top's data goes through unchanged, as base's.
    out=$(commit_both . -b base.qcow2 top.qcow2) || e="$e; $out"
    qemu-img compare k/sub/top.qcow2 top.raw >/dev/null || e="$e; top content changed"
    qemu-img compare k/sub/base.qcow2 top.raw >/dev/null || e="$e; base != top's old content"
    for args in "-b mid.qcow2 top.qcow2" "-d -b base.qcow2 top.qcow2" "-b base.qcow2 -d top.qcow2" \
                "-q -b base.qcow2 top.qcow2" "-b ./base.qcow2 top.qcow2" "-b @/base.qcow2 top.qcow2" \
                "-f qcow2 -b base.qcow2 top.qcow2" "-b base.qcow2 mid.qcow2" \
                "-b nope.qcow2 top.qcow2" "-b top.qcow2 top.qcow2" "-b base.qcow2 base.qcow2" \
                "-b mid.qcow2 mid.qcow2" "-b" "-b base.qcow2 nonexist.qcow2"; do
        out=$(commit_both . $args) || e="$e; $out"
    done
    out=$(commit_both . -b "" top.qcow2) || e="$e; $out"
    # Relative -b: taken relative to the image's directory, not the cwd.
    out=$(commit_both .. -b base.qcow2 sub/top.qcow2) || e="$e; $out"
    out=$(commit_both .. -b sub/base.qcow2 sub/top.qcow2) || e="$e; $out"
    # A shorter intermediate image: the top reads zeros past its end.
    rm -rf chain; mkdir chain
    qemu-img create -q -f qcow2 chain/base.qcow2 16M
    qemu-io -c 'write -P 1 0 16M' chain/base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 chain/mid.qcow2 8M
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 chain/top.qcow2 16M
    qemu-io -c 'write -P 3 0 64k' chain/top.qcow2 >/dev/null
    out=$(commit_both . -b base.qcow2 top.qcow2) || e="$e; short mid: $out"
    # A base smaller than the top: grown first.
    rm -rf chain; mkdir chain
    qemu-img create -q -f qcow2 chain/base.qcow2 4M
    qemu-io -c 'write -P 1 0 4M' chain/base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 chain/mid.qcow2 8M
    qemu-io -c 'write -P 2 6M 64k' chain/mid.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 chain/top.qcow2 16M
    qemu-io -c 'write -P 3 12M 64k' chain/top.qcow2 >/dev/null
    out=$(commit_both . -b base.qcow2 top.qcow2) || e="$e; small base: $out"
    [ "$(qemu-img info k/sub/base.qcow2 | grep 'virtual size')" = "$(qemu-img info q/sub/base.qcow2 | grep 'virtual size')" ] ||
        e="$e; small base: base size differs from qemu-img's"
    [ -z "$e" ] && pass commit-base || fail commit-base "${e#; }"
}

# ---- convert -l ----------------------------------------------------------

# Convert with both tools (same selector and options), compare messages,
# exit codes and, on success, the output (raw: byte for byte).
convert_both() {   # convert_both SRC OFMT args...
    local src=$1 ofmt=$2; shift 2
    rm -f q.out k.out
    local a b ra rb
    a=$(qemu-img convert -O "$ofmt" "$@" "$src" q.out 2>&1); ra=$?
    b=$("$K" convert -O "$ofmt" "$@" "$src" k.out 2>&1); rb=$?
    a=${a//qemu-img/TOOL}; b=${b//kvmbox-img/TOOL}
    [ "$ra" = "$rb" ] || { echo "convert $* $src: exit $rb, qemu-img $ra ($b)"; return 1; }
    [ "$a" = "$b" ] || { echo "convert $* $src: output '$b', qemu-img '$a'"; return 1; }
    if [ -e q.out ] && [ ! -e k.out ]; then echo "convert $* $src: no target"; return 1; fi
    if [ ! -e q.out ] && [ -e k.out ]; then echo "convert $* $src: target created on failure"; return 1; fi
    [ -e q.out ] || return 0
    if [ "$ofmt" = raw ]; then
        same_raw q.out k.out || { echo "convert $* $src: raw output differs"; return 1; }
    else
        qemu-img compare q.out k.out >/dev/null || { echo "convert $* $src: content differs"; return 1; }
        [ "$(qemu-img info k.out | grep 'virtual size')" = "$(qemu-img info q.out | grep 'virtual size')" ] ||
            { echo "convert $* $src: size differs"; return 1; }
        qcheck k.out || return 1
    fi
}

t_convert_snapshot() {
    local e="" out
    for cs in 64k 4k; do
        rm -f s.qcow2
        qemu-img create -q -f qcow2 -o cluster_size=$cs s.qcow2 16M
        qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 7 2M 64k' -c 'write -z 3M 64k' -c 'write -P 9 15M 1M' s.qcow2 >/dev/null
        qemu-img snapshot -c s1 s.qcow2
        qemu-img convert -O raw s.qcow2 s1.raw
        qemu-io -c 'write -P 2 0 512k' -c 'write -P 8 3M 64k' s.qcow2 >/dev/null
        qemu-img snapshot -c 3 s.qcow2                  # a name that looks like an ID
        qemu-io -c 'write -P 4 256k 64k' -c 'discard 15M 1M' s.qcow2 >/dev/null
        cp s.qcow2 s0.qcow2
        for sel in "-l s1" "-l 1" "-l 2" "-l 3" "-l snapshot.id=1" "-l snapshot.name=s1" \
                   "-l snapshot.id=1,snapshot.name=s1" "-l snapshot.id=2,snapshot.name=s1" \
                   "-l snapshot.name=3" "-l snapshot.id=3" "-l nope" "-l snapshot.id=" \
                   "-l s1,x" "-l snapshot.name=s1," "-l snapshot.id=1,,x" "-l snapshot.foo=1" \
                   "-l snapshot.id=1,name=x" "-l snapshot.id" "-l snapshot.id=9 -l s1" \
                   "-l s2 -l snapshot.id=1" "-l snapshot.id=2 -l snapshot.name=s1" "-s s1" \
                   "-l nope -c" "-l s1 -c"; do
            out=$(convert_both s.qcow2 raw $sel) || e="$e; $cs: $out"
        done
        for sel in "-l s1" "-l snapshot.id=2" "-c -l s1"; do
            out=$(convert_both s.qcow2 qcow2 $sel) || e="$e; $cs qcow2: $out"
        done
        rm -f k.raw; "$K" convert -O raw -l s1 s.qcow2 k.raw && cmp -s k.raw s1.raw || e="$e; $cs: -l s1 is not the snapshot's content"
        cmp -s s.qcow2 s0.qcow2 || e="$e; $cs: source changed"
        # Resized after the snapshot: the active size is kept (past the
        # snapshot's tables reads zeros), as qemu-img.
        qemu-img resize -q s.qcow2 1G; qemu-io -c 'write -P 6 900M 64k' s.qcow2 >/dev/null
        out=$(convert_both s.qcow2 raw -l s1) || e="$e; $cs grown: $out"
        qemu-img resize -q --shrink s.qcow2 8M
        out=$(convert_both s.qcow2 raw -l snapshot.name=s1) || e="$e; $cs shrunk: $out"
    done
    # A snapshot in an overlay: its unallocated clusters come from the backing file.
    qemu-img create -q -f qcow2 b.qcow2 8M; qemu-io -c 'write -P 5 0 8M' b.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 o.qcow2
    qemu-io -c 'write -P 6 1M 64k' o.qcow2 >/dev/null; qemu-img snapshot -c s o.qcow2
    qemu-io -c 'write -P 7 0 4M' o.qcow2 >/dev/null
    out=$(convert_both o.qcow2 raw -l s) || e="$e; overlay: $out"
    qemu-img create -q -f raw r.raw 1M
    out=$(convert_both r.raw raw -l s1) || e="$e; raw source: $out"
    out=$(convert_both s.qcow2 raw -l s1 s.qcow2) || e="$e; two sources: $out"
    out=$(convert_both nonexist.qcow2 raw -l s1) || e="$e; $out"
    [ -z "$e" ] && pass convert-snapshot || fail convert-snapshot "${e#; }"
}

# ---- snapshot -a with a bigger snapshot L1 -------------------------------

# Apply with both tools on copies of IMG; compare messages, exit code,
# header size and L1 size, content (also against the snapshot's content
# saved in RAW), check; then the image must take writes everywhere and keep
# the snapshot.
apply_both() {   # apply_both IMG SNAP RAW
    local img=$1 sn=$2 raw=$3 out
    out=$(same_on_copies "$img" snapshot -a "$sn" @) || { echo "$out"; return 1; }
    local q=q_$img k=k_$img
    [ "$(hdr_field $k 24 8)" = "$(hdr_field $q 24 8)" ] || { echo "$img: size $(hdr_field $k 24 8), qemu-img $(hdr_field $q 24 8)"; return 1; }
    [ "$(hdr_field $k 36 4)" = "$(hdr_field $q 36 4)" ] || { echo "$img: L1 size $(hdr_field $k 36 4), qemu-img $(hdr_field $q 36 4)"; return 1; }
    qcheck "$k" || return 1
    qemu-img compare "$q" "$k" >/dev/null || { echo "$img: content differs from qemu-img's"; return 1; }
    qemu-img compare "$k" "$raw" >/dev/null || { echo "$img: content is not the snapshot's"; return 1; }
    local end=$(( $(hdr_field $k 24 8) - 65536 ))
    qemu-io -c "write -P 0x5a 0 64k" -c "write -P 0x5b $end 64k" "$k" >/dev/null 2>&1 || { echo "$img: writes after -a failed"; return 1; }
    qcheck "$k" || return 1
    rm -f after.raw; qemu-img convert -O raw -l "$sn" "$k" after.raw && same_raw after.raw "$raw" || { echo "$img: snapshot changed by -a"; return 1; }
}

t_snapshot_apply_grow() {
    local e="" out
    # The active L1 table smaller than the snapshot's: after a shrink (the
    # entries past the end are empty) the header's L1 size is cut down,
    # as an image made by another tool may have it.
    for big in 64M 2G; do
        rm -f a.qcow2 s1.raw
        qemu-img create -q -f qcow2 -o cluster_size=4k a.qcow2 $big
        qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 2 4M 64k' -c "write -P 3 $(( $(qemu-img info --output=json a.qcow2 | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p') - 1048576 )) 1M" a.qcow2 >/dev/null
        qemu-img snapshot -c s1 a.qcow2
        qemu-img convert -O raw a.qcow2 s1.raw
        qemu-img resize -q --shrink a.qcow2 8M
        qemu-io -c 'write -P 5 0 64k' a.qcow2 >/dev/null
        printf '\x00\x00\x00\x04' | dd of=a.qcow2 bs=1 seek=36 conv=notrunc 2>/dev/null
        # A multi-cluster table's tail clusters leak now: give them back.
        qemu-img check -q -r leaks a.qcow2 >/dev/null 2>&1
        qcheck a.qcow2 || e="$e; $big: crafted image"
        out=$(apply_both a.qcow2 s1 s1.raw) || e="$e; $big: $out"
        [ "$(hdr_field k_a.qcow2 36 4)" -gt 4 ] || e="$e; $big: L1 not grown"
    done
    # Grown after the snapshot (the L1 table grows with it), then back.
    rm -f g.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=4k g.qcow2 16M
    qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 15M 1M' g.qcow2 >/dev/null
    qemu-img snapshot -c s1 g.qcow2; qemu-img convert -O raw g.qcow2 g1.raw
    "$K" resize -q g.qcow2 1100M; qemu-io -c 'write -P 3 1G 1M' g.qcow2 >/dev/null
    out=$(apply_both g.qcow2 s1 g1.raw) || e="$e; grown: $out"
    # Shrunk after the snapshot, then back to the bigger size.
    qemu-img snapshot -c s2 g.qcow2; qemu-img convert -O raw g.qcow2 g2.raw
    "$K" resize -q --shrink g.qcow2 4M
    out=$(apply_both g.qcow2 s2 g2.raw) || e="$e; shrunk: $out"
    out=$(same_on_copies g.qcow2 snapshot -a nope @) || e="$e; $out"
    [ -z "$e" ] && pass snapshot-apply-grow || fail snapshot-apply-grow "${e#; }"
}
