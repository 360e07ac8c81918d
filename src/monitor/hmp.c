/* HMP: the human monitor's line editor and command parser. */
#include "monitor/monitor_internal.h"

void hmp_init(struct monitor *m)
{
}

void hmp_greet(struct monitor *m)
{
}

void hmp_input(struct monitor *m, const uint8_t *buf, size_t len)
{
}
