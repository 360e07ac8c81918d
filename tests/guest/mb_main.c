/* kvmbox test guest, 32-bit multiboot v1 kernel: report what the loader
 * handed over and power off. */
#include "lib.h"

struct mb_info {
    u32 flags;
    u32 mem_lower, mem_upper;
    u32 boot_device;
    u32 cmdline;
};

void mb_main(u32 magic, const struct mb_info *mbi);
void mb_main(u32 magic, const struct mb_info *mbi)
{
    serial_init();
    if (magic != 0x2BADB002) {
        kprintf("FAIL multiboot: bad magic 0x%x\n", magic);
        outl(PORT_DEBUG_EXIT, 10);
        power_off();
    }
    if (!(mbi->flags & 1)) {
        kprintf("FAIL multiboot: no memory info (flags 0x%x)\n", mbi->flags);
        outl(PORT_DEBUG_EXIT, 11);
        power_off();
    }
    const char *cmd = (mbi->flags & 4) && mbi->cmdline ? (const char *)mbi->cmdline : "";
    kprintf("multiboot: ok mem_lower=%u mem_upper=%u cmdline=%s\n", mbi->mem_lower,
            mbi->mem_upper, cmd);
    power_off();
}
