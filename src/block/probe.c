/* Format probing by magic number, as QEMU's bdrv_probe_all: a file is raw
 * unless it starts with the signature of a format. The same table guards
 * block 0 of probed raw images (block.c): a guest must not be able to write
 * a signature there and have the next probe open its data as, say, a qcow2
 * image whose backing file is the host's /etc/shadow. */
#include "block/block_int.h"

#include <string.h>

struct probe_magic {
    const char *format;
    size_t offset;
    size_t len;
    const char *magic;
};

/* Signatures from the formats' specifications (qcow2: docs/interop/
 * qcow2.txt; QED, VMDK sparse extent, VDI pre-header, VHDX, VPC footer
 * copy, LUKS1/2, Parallels). Only their presence matters here. */
static const struct probe_magic probe_magics[] = {
    { "qcow2", 0, 4, "QFI\xfb" },       /* qcow (v1) shares it; told apart by version */
    { "qed", 0, 4, "QED\0" },
    { "vmdk", 0, 4, "KDMV" },
    { "vmdk", 0, 4, "COWD" },
    { "vdi", 0x40, 4, "\x7f\x10\xda\xbe" },
    { "vhdx", 0, 8, "vhdxfile" },
    { "vpc", 0, 8, "conectix" },
    { "luks", 0, 6, "LUKS\xba\xbe" },
    { "parallels", 0, 16, "WithoutFreeSpace" },
    { "parallels", 0, 16, "WithouFreSpacExt" },
    { "bochs", 0, 22, "Bochs Virtual HD Image" },
    { "cloop", 0, 22, "#!/bin/sh\n#V2.0 Format" },
};

const char *blk_probe_format(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < sizeof probe_magics / sizeof probe_magics[0]; i++) {
        const struct probe_magic *m = &probe_magics[i];
        if (m->offset + m->len <= len && memcmp(buf + m->offset, m->magic, m->len) == 0) {
            /* qcow version 1 files are "qcow", not "qcow2". */
            if (i == 0 && len >= 8 && buf[4] == 0 && buf[5] == 0 && buf[6] == 0 && buf[7] == 1)
                return "qcow";
            return m->format;
        }
    }
    return NULL;
}

const char blk_probed_raw_warning[] =
    "Image format was not specified for '%s' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, write operations "
    "on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.";
