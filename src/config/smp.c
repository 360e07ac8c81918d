/* -smp as QEMU 7.2 reads it for the x86 pc machine: missing topology values
 * are derived from the given ones, preferring cores over sockets (QEMU >= 6.2
 * machine types), and the product must equal maxcpus. */
#include "config/config.h"
#include "config/keyval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int smp_number(struct keyval *kv, const char *key, unsigned *out,
                      char *err, unsigned errlen)
{
    const char *v = keyval_get(kv, key);
    *out = 0;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || errno || n > 4096) {
        snprintf(err, errlen, "-smp: invalid %s '%s' (expected a number)", key, v);
        return -EINVAL;
    }
    if (n == 0) {
        snprintf(err, errlen, "-smp: %s must be greater than zero", key);
        return -EINVAL;
    }
    *out = (unsigned)n;
    return 0;
}

int config_parse_smp(const char *s, struct smp_config *smp, char *err, unsigned errlen)
{
    struct keyval kv;
    if (keyval_parse(&kv, s, "cpus") < 0) {
        snprintf(err, errlen, "-smp: cannot parse '%s' (expected "
                 "N[,cores=C][,threads=T][,sockets=S][,maxcpus=M])", s);
        return -EINVAL;
    }
    unsigned cpus, sockets, cores, threads, maxcpus, dies;
    int ret = -EINVAL;
    if (smp_number(&kv, "cpus", &cpus, err, errlen) ||
        smp_number(&kv, "sockets", &sockets, err, errlen) ||
        smp_number(&kv, "cores", &cores, err, errlen) ||
        smp_number(&kv, "threads", &threads, err, errlen) ||
        smp_number(&kv, "maxcpus", &maxcpus, err, errlen) ||
        smp_number(&kv, "dies", &dies, err, errlen))
        goto out;
    const char *unused = keyval_unused(&kv);
    if (unused) {
        snprintf(err, errlen, "-smp: unknown parameter '%s' (expected "
                 "N[,cores=C][,threads=T][,sockets=S][,maxcpus=M])", unused);
        goto out;
    }
    if (dies > 1) {
        snprintf(err, errlen, "-smp: dies=%u is not supported by the pc machine "
                 "(expected dies=1)", dies);
        goto out;
    }
    if (cpus == 0 && maxcpus == 0) {
        sockets = sockets ? sockets : 1;
        cores = cores ? cores : 1;
        threads = threads ? threads : 1;
    } else {
        maxcpus = maxcpus ? maxcpus : cpus;
        if (cores == 0) {
            sockets = sockets ? sockets : 1;
            threads = threads ? threads : 1;
            cores = maxcpus / (sockets * threads);
            cores = cores ? cores : 1;
        } else if (sockets == 0) {
            threads = threads ? threads : 1;
            sockets = maxcpus / (cores * threads);
            sockets = sockets ? sockets : 1;
        }
        if (threads == 0) {
            threads = maxcpus / (sockets * cores);
            threads = threads ? threads : 1;
        }
    }
    unsigned long product = (unsigned long)sockets * cores * threads;
    maxcpus = maxcpus ? maxcpus : (unsigned)product;
    cpus = cpus ? cpus : maxcpus;
    if (product != maxcpus) {
        snprintf(err, errlen, "-smp: invalid CPU topology: sockets (%u) * cores "
                 "(%u) * threads (%u) != maxcpus (%u)", sockets, cores, threads,
                 maxcpus);
        goto out;
    }
    if (maxcpus < cpus) {
        snprintf(err, errlen, "-smp: maxcpus (%u) must be equal to or greater "
                 "than the number of CPUs (%u)", maxcpus, cpus);
        goto out;
    }
    *smp = (struct smp_config){ cpus, sockets, cores, threads, maxcpus };
    ret = 0;
out:
    keyval_free(&kv);
    return ret;
}
