/* QMP: the JSON protocol (docs/interop/qmp-spec in QEMU). */
#include "monitor/monitor_internal.h"

#include "monitor/json.h"

int qmp_init(struct monitor *m)
{
    return 0;
}

void qmp_fini(struct monitor *m)
{
}

void qmp_greet(struct monitor *m)
{
}

void qmp_input(struct monitor *m, const uint8_t *buf, size_t len)
{
}
