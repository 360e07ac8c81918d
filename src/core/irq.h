/* Interrupt lines as devices see them. A device holds a struct irq_line and
 * calls irq_line_set(); what is behind it (KVM_IRQ_LINE on the in-kernel
 * PIC/IOAPIC, or a recorder in a unit test) is the ops table's business.
 * irq_line_set may be called from any thread. */
#ifndef KVMBOX_IRQ_H
#define KVMBOX_IRQ_H

#include <stdint.h>

struct irq_chip_ops {
    /* level: 1 asserted, 0 deasserted. Returns 0 or -errno. */
    int (*set_level)(void *ctx, uint32_t gsi, int level);
};

struct irq_line {
    const struct irq_chip_ops *ops;   /* NULL: not connected, set is a no-op */
    void *ctx;
    uint32_t gsi;
};

static inline void irq_line_set(const struct irq_line *line, int level)
{
    if (line && line->ops)
        line->ops->set_level(line->ctx, line->gsi, level);
}

/* Edge-triggered ISA devices pulse: assert then deassert. */
static inline void irq_line_pulse(const struct irq_line *line)
{
    irq_line_set(line, 1);
    irq_line_set(line, 0);
}

#endif
