/* QEMU's firmware configuration device (fw_cfg), traditional I/O-port
 * interface only (no DMA: FW_CFG_ID reads 1), as specified in QEMU's
 * docs/specs/fw_cfg.rst:
 *   0x510  selector, 16-bit little-endian write: choose an item, offset := 0
 *   0x511  data, 8-bit reads: the item's bytes in order, 0 past the end
 * Register both as one 2-byte range: the spec says the two ports overlap
 * (a 16-bit selector write at 0x510 covers 0x511).
 *
 * Items are blobs keyed by a 16-bit selector; keys 0x0020 and up are
 * "files", listed in the FW_CFG_FILE_DIR item (big-endian count, then per
 * file be32 size, be16 select, be16 reserved, char name[56]). The device
 * adds FW_CFG_SIGNATURE ("QEMU"), FW_CFG_ID and FW_CFG_FILE_DIR itself; the
 * machine adds RAM size, CPU counts, files, ...
 * The data port is read-only: selector bit 14 (write channel) and data
 * writes are ignored, as in QEMU since v2.4.
 *
 * Threads and locking: the fw_cfg_add_* functions are meant for machine
 * setup but may run at any time; the bus callbacks run on vCPU threads.
 * Everything is under the device mutex. No callbacks, no interrupt.
 */
#ifndef KVMBOX_HW_FW_CFG_H
#define KVMBOX_HW_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"

#define FW_CFG_NR_PORTS      2      /* bus_register(pio, PORT_FW_CFG, FW_CFG_NR_PORTS, ...) */

/* Well-known selector keys (QEMU's include/standard-headers/linux/qemu_fw_cfg.h). */
#define FW_CFG_SIGNATURE     0x0000
#define FW_CFG_ID            0x0001
#define FW_CFG_UUID          0x0002
#define FW_CFG_RAM_SIZE      0x0003 /* u64 */
#define FW_CFG_NOGRAPHIC     0x0004
#define FW_CFG_NB_CPUS       0x0005 /* u16 */
#define FW_CFG_MACHINE_ID    0x0006
#define FW_CFG_KERNEL_ADDR   0x0007
#define FW_CFG_KERNEL_SIZE   0x0008
#define FW_CFG_KERNEL_CMDLINE 0x0009
#define FW_CFG_INITRD_ADDR   0x000a
#define FW_CFG_INITRD_SIZE   0x000b
#define FW_CFG_BOOT_DEVICE   0x000c
#define FW_CFG_NUMA          0x000d
#define FW_CFG_BOOT_MENU     0x000e
#define FW_CFG_MAX_CPUS      0x000f /* u16 */
#define FW_CFG_KERNEL_ENTRY  0x0010
#define FW_CFG_KERNEL_DATA   0x0011
#define FW_CFG_INITRD_DATA   0x0012
#define FW_CFG_CMDLINE_ADDR  0x0013
#define FW_CFG_CMDLINE_SIZE  0x0014
#define FW_CFG_CMDLINE_DATA  0x0015
#define FW_CFG_SETUP_ADDR    0x0016
#define FW_CFG_SETUP_SIZE    0x0017
#define FW_CFG_SETUP_DATA    0x0018
#define FW_CFG_FILE_DIR      0x0019
#define FW_CFG_FILE_FIRST    0x0020
#define FW_CFG_WRITE_CHANNEL 0x4000
#define FW_CFG_ARCH_LOCAL    0x8000

#define FW_CFG_MAX_FILE_PATH 56     /* including the NUL */
#define FW_CFG_MAX_FILES     1024   /* our limit; the key space allows 0x3fe0 */
#define FW_CFG_ID_TRADITIONAL 0x1   /* FW_CFG_ID bit 0; bit 1 (DMA) clear */

struct fw_cfg;

/* A device holding the signature, ID and an empty file directory. */
struct fw_cfg *fw_cfg_new(void);
void fw_cfg_free(struct fw_cfg *fw);
/* VM reset: selector back to FW_CFG_SIGNATURE, offset 0. Items stay. */
void fw_cfg_reset(struct fw_cfg *fw);

/* Add an item under key (data is copied; len may be 0). Keys are the
 * generic 0x0001-0x001f range or arch-local ones (bit 15). 0, or -EINVAL
 * (write-channel bit, file-range key, FW_CFG_FILE_DIR), -EEXIST (key in
 * use), -ENOMEM, -EFBIG (len over 4 GiB - 1). */
int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data, size_t len);
/* Little-endian integers, as QEMU stores them. */
int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t value);
int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t value);
int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t value);
/* Add a named file (e.g. "etc/acpi/tables"); it gets the next key from
 * FW_CFG_FILE_FIRST on, in the order files are added. Returns that key
 * (> 0), or -EINVAL (empty name), -ENAMETOOLONG (55 chars max), -EEXIST
 * (name in use), -ENOSPC (FW_CFG_MAX_FILES), -ENOMEM, -EFBIG. */
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len);

extern const struct bus_ops fw_cfg_bus_ops;

#endif
