/* Scatter-gather helpers over struct iovec arrays (virtqueue elements). */
#ifndef KVMBOX_IOV_H
#define KVMBOX_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Copy up to len bytes starting offset bytes into the vector; returns the
 * number copied (short when the vector ends first). */
size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
                    size_t len);
/* Describe bytes [offset, offset+len) of src in dst (at most dst_max
 * entries; dst_max >= cnt always suffices); returns the entries used. When
 * dst or src runs out first the slice is shorter than len: a caller that
 * cannot rely on the sizes checks iov_size() of the result. */
unsigned iov_slice(const struct iovec *src, unsigned cnt, size_t offset, size_t len,
                   struct iovec *dst, unsigned dst_max);
/* Set bytes [offset, offset+len) of the vector to c. */
void iov_memset(const struct iovec *iov, unsigned cnt, size_t offset, int c, size_t len);
size_t iov_size(const struct iovec *iov, unsigned cnt);

#endif
