/* fuzz-sources: src/hw/virtio/virtqueue.c src/core/guest_mem.c */
/* Split virtqueue parsing (virtio 1.2 §2.7) is the guest's most direct line
 * into the device model: whatever the rings, descriptors and indirect tables
 * say, popping and pushing must never touch memory outside guest RAM, never
 * loop forever and never crash.
 *
 * Input: a 16-byte header, then the contents of a small guest memory of two
 * RAM regions with a hole between them (like the PCI hole):
 *   region 0: gpa 0x00000..0x07fff   (input bytes 16 .. 16+32K)
 *   hole:     gpa 0x08000..0x0ffff
 *   region 1: gpa 0x10000..0x17fff   (the next 32K of input)
 * Each region is its own exact-size heap block, so ASan catches any access
 * past a region. Header:
 *   [0]     log2 queue size (mod 9: 1..256)
 *   [1]     bit0 INDIRECT_DESC, bit1 EVENT_IDX, bit2 align ring addresses,
 *           bit3 toggle notifications while draining, bit4 unpop sometimes
 *   [2..3]  desc gpa / 2      [4..5] avail gpa / 2     [6..7] used gpa / 2
 *   [8..9]  starting last_avail_idx (= used_idx)
 *   [10..11] bytes reported written per element
 *   [12..15] unused */
#include "hw/virtio/virtqueue.h"

#include <stdlib.h>
#include <string.h>

#define REGION_SIZE 0x8000u
#define REGION1_GPA 0x10000u
#define HDR 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR)
        return 0;
    uint8_t *r0 = calloc(1, REGION_SIZE), *r1 = calloc(1, REGION_SIZE);
    struct virtq_elem *elem = malloc(sizeof *elem);
    if (!r0 || !r1 || !elem)
        goto out;
    size_t body = size - HDR;
    size_t n0 = body < REGION_SIZE ? body : REGION_SIZE;
    memcpy(r0, data + HDR, n0);
    if (body > REGION_SIZE) {
        size_t n1 = body - REGION_SIZE;
        memcpy(r1, data + HDR + REGION_SIZE, n1 < REGION_SIZE ? n1 : REGION_SIZE);
    }
    struct guest_mem mem;
    memset(&mem, 0, sizeof mem);
    mem.regions[0] = (struct gmem_region){ 0, REGION_SIZE, r0 };
    mem.regions[1] = (struct gmem_region){ REGION1_GPA, REGION_SIZE, r1 };
    mem.n = 2;
    mem.ram_size = 2 * REGION_SIZE;

    uint8_t flags = data[1];
    struct virtq vq;
    virtq_init(&vq, &mem, 256);
    vq.s.size = (uint16_t)(1u << (data[0] % 9));
    vq.s.desc_gpa = 2ULL * rd16(data + 2);
    vq.s.avail_gpa = 2ULL * rd16(data + 4);
    vq.s.used_gpa = 2ULL * rd16(data + 6);
    if (flags & 4) {
        vq.s.desc_gpa &= ~15ULL;
        vq.s.used_gpa &= ~3ULL;
    }
    vq.s.last_avail_idx = vq.s.used_idx = rd16(data + 8);
    vq.indirect = flags & 1;
    vq.event_idx = flags & 2;
    uint32_t written = rd16(data + 10);
    (void)virtq_check_config(&vq);      /* the transport would refuse; pop must cope anyway */
    vq.s.ready = true;

    /* Each pop consumes an avail entry, and at most `size` are pending: the
     * bound below is generous, only there to prove termination. */
    unsigned limit = 4u * vq.s.size + 8, unpops = 0;
    volatile uint8_t sink = 0;
    for (unsigned it = 0; it < limit; it++) {
        if (flags & 8)
            virtq_set_notification(&vq, false);
        int rc = virtq_pop(&vq, elem);
        if (rc < 0)
            break;
        if (rc == 0) {
            if ((flags & 8) && virtq_set_notification(&vq, true))
                continue;
            break;
        }
        /* Touch every byte the element maps: out of bounds -> ASan. */
        for (unsigned i = 0; i < elem->out_num; i++) {
            const uint8_t *p = elem->iov[i].iov_base;
            for (size_t k = 0; k < elem->iov[i].iov_len; k++)
                sink ^= p[k];
        }
        for (unsigned i = elem->out_num; i < elem->out_num + elem->in_num; i++)
            memset(elem->iov[i].iov_base, 0xa5, elem->iov[i].iov_len);
        if ((flags & 16) && unpops < 4 && (it & 1)) {
            virtq_unpop(&vq);
            unpops++;
            continue;
        }
        if (virtq_push(&vq, elem, written) < 0)
            break;
        (void)virtq_should_notify(&vq);
    }
    (void)sink;
out:
    free(elem);
    free(r1);
    free(r0);
    return 0;
}
