/* memsave / pmemsave: guest memory to a file, in bounded chunks (no
 * allocation proportional to the client's size). */
#include "monitor/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/vm.h"

static struct json *save(struct monitor *m, const struct json *a, bool physical,
                         struct qmp_error *e)
{
    struct vm *vm = m->vm;
    uint64_t addr = (uint64_t)json_get_int(json_object_get(a, "val"));
    int64_t size = json_get_int(json_object_get(a, "size"));
    const char *file = json_get_string(json_object_get(a, "filename"));
    unsigned cpu = m->hmp.cur_cpu;
    struct json *ci = json_object_get(a, "cpu-index");
    if (ci) {
        int64_t c = json_get_int(ci);
        if (c < 0 || (uint64_t)c >= vm->nr_vcpus) {
            qmp_error_set(e, QERR_GENERIC, "Parameter 'cpu-index' expects a CPU number");
            return NULL;
        }
        cpu = (unsigned)c;
    }
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        qmp_error_set(e, QERR_GENERIC, "Could not open '%s': %s", file, strerror(errno));
        return NULL;
    }
    bool held = monitor_vcpus_hold(vm);
    uint8_t buf[4096];
    uint64_t a0 = addr;
    int64_t left = size < 0 ? 0 : size;
    bool ok = true;
    while (left > 0 && ok) {
        size_t l = left > (int64_t)sizeof buf ? sizeof buf : (size_t)left;
        if (monitor_read_mem(vm, cpu, physical, addr, buf, l) < 0) {
            qmp_error_set(e, QERR_GENERIC, "Invalid addr 0x%016llx/size %lld specified",
                          (unsigned long long)a0, (long long)size);
            ok = false;
            break;
        }
        size_t off = 0;
        while (off < l) {
            ssize_t n = write(fd, buf + off, l - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                qmp_error_set(e, QERR_GENERIC, "writing memory to '%s' failed: %s", file,
                              n < 0 ? strerror(errno) : "short write");
                ok = false;
                break;
            }
            off += (size_t)n;
        }
        addr += l;
        left -= (int64_t)l;
    }
    monitor_vcpus_release(vm, held);
    close(fd);
    if (!ok)
        return NULL;
    struct json *r = json_object();
    if (!r)
        qmp_error_set(e, QERR_GENERIC, "Out of memory");
    return r;
}

struct json *cmd_memsave(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    return save(m, a, false, e);
}

struct json *cmd_pmemsave(struct monitor *m, const struct json *a, struct qmp_error *e)
{
    return save(m, a, true, e);
}
