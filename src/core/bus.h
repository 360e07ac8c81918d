/* I/O buses: PIO and MMIO address ranges mapped to device callbacks.
 *
 * Threads: bus_access() runs on vCPU threads (and in unit tests on the test
 * thread); registration normally happens before the vCPUs start, but is
 * allowed later (PCI BAR relocation), so the range table is guarded by a
 * rwlock: readers are the vCPUs, writers the rare (re)mappers.
 * Callbacks run with the bus read lock held: a callback must not register or
 * unregister ranges on the same bus. Each device serialises its own state
 * (vCPUs may access one device concurrently).
 */
#ifndef KVMBOX_BUS_H
#define KVMBOX_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus_ops {
    /* off is relative to the registered base; len is 1, 2, 4 or 8.
     * read must fill all len bytes of data (little-endian). */
    void (*read)(void *opaque, uint64_t off, void *data, unsigned len);
    void (*write)(void *opaque, uint64_t off, const void *data, unsigned len);
};

struct bus_range {
    uint64_t base, len;
    const char *name;
    const struct bus_ops *ops;
    void *opaque;
};

struct bus {
    pthread_rwlock_t lock;
    struct bus_range *ranges;   /* sorted by base, non-overlapping */
    size_t n, cap;
};

int bus_init(struct bus *b);
void bus_destroy(struct bus *b);
/* 0, -EEXIST if [base, base+len) overlaps a registered range, -EINVAL for
 * len 0 or wrap-around, -ENOMEM. name must outlive the registration. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const char *name,
                 const struct bus_ops *ops, void *opaque);
/* Remove the range that starts exactly at base: 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base);
/* Dispatch one access. Returns false when no range covers addr (reads then
 * see all-ones, as on real hardware with nothing decoding the address). An
 * access that starts in a range but runs past its end is split: the part
 * outside reads as ones / is dropped. */
bool bus_access(struct bus *b, uint64_t addr, void *data, unsigned len,
                bool is_write);
/* Call fn for each range (for `info mtree`), in address order. */
void bus_for_each(struct bus *b,
                  void (*fn)(void *ctx, const struct bus_range *r), void *ctx);

#endif
