/* CPUID shaping: topology leaves and the KVM signature for -smp layouts. */
#include "arch/x86/cpu.h"
#include "test.h"

#include <stdlib.h>

static struct kvm_cpuid2 *supported(void)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + 16 * sizeof c->entries[0]);
    unsigned n = 0;
    c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0x1f };
    c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0x806f8, .ebx = 0xff0800,
                                                 .ecx = 0x7ffefbff, .edx = 0xbfebfbff };
    for (unsigned i = 0; i < 4; i++)
        c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 4, .index = i,
            .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            .eax = i < 3 ? (0x21 + (i == 2 ? 0x20 : 0) + (i == 3 ? 0x40 : 0)) : 0x163 };
    /* What this host's KVM offers: leaf 0xB with an empty subleaf 0 only. */
    c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 0,
        .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .edx = 1 };
    c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000000, .eax = 0x40000001 };
    c->entries[n++] = (struct kvm_cpuid_entry2){ .function = 0x40000001, .eax = 0x1fb };
    c->nent = n;
    return c;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    return NULL;
}

TEST(single_cpu)
{
    struct kvm_cpuid2 *in = supported();
    struct kvm_cpuid2 *out = calloc(1, sizeof *out + (in->nent + 8) * sizeof out->entries[0]);
    struct smp_config smp = { 1, 1, 1, 1, 1 };
    x86_cpuid_for_vcpu(in, out, &smp, 0, 0, 1u << 11);
    /* 0xB's one subleaf replaced by three, and three of 0x1F added
     * (max basic leaf 0x1f). */
    CHECK_EQ(out->nent, in->nent - 1 + 6);
    CHECK(find(out, 0x1f, 1) != NULL);
    CHECK_EQ(find(out, 0xb, 1)->ebx, 1);
    const struct kvm_cpuid_entry2 *l1 = find(out, 1, 0);
    CHECK(l1 != NULL);
    CHECK_EQ(l1->ebx >> 24, 0);
    CHECK_EQ((l1->ebx >> 16) & 0xff, 1);
    CHECK(!(l1->edx & (1u << 28)));
    CHECK(l1->ecx & (1u << 31));
    const struct kvm_cpuid_entry2 *sig = find(out, 0x40000000, 0);
    CHECK_EQ(sig->ebx, 0x4b4d564b);       /* "KVMK" */
    CHECK_EQ(sig->ecx, 0x564b4d56);       /* "VMKV" */
    CHECK_EQ(sig->edx, 0x4d);             /* "M" */
    CHECK_EQ(find(out, 0x40000001, 0)->eax, 0x1fb & ~(1u << 11));   /* kvm-pv-ipi=off */
    free(in);
    free(out);
}

TEST(topology_2s_2c_2t)
{
    struct kvm_cpuid2 *in = supported();
    struct kvm_cpuid2 *out = calloc(1, sizeof *out + (in->nent + 8) * sizeof out->entries[0]);
    struct smp_config smp = { 8, 2, 2, 2, 8 };
    /* CPU index 5 = socket 1, core 0, thread 1 -> APIC ID 1<<2 | 0<<1 | 1 = 5 */
    x86_cpuid_for_vcpu(in, out, &smp, 5, 0, 0);
    const struct kvm_cpuid_entry2 *l1 = find(out, 1, 0);
    CHECK_EQ(l1->ebx >> 24, 5);
    CHECK_EQ((l1->ebx >> 16) & 0xff, 4);       /* logical CPUs per package */
    CHECK(l1->edx & (1u << 28));
    const struct kvm_cpuid_entry2 *smt = find(out, 0xb, 0), *core = find(out, 0xb, 1),
                                  *end = find(out, 0xb, 2);
    CHECK_EQ(smt->eax, 1);
    CHECK_EQ(smt->ebx, 2);
    CHECK_EQ((smt->ecx >> 8) & 0xff, 1);
    CHECK_EQ(smt->edx, 5);
    CHECK_EQ(core->eax, 2);
    CHECK_EQ(core->ebx, 4);
    CHECK_EQ((core->ecx >> 8) & 0xff, 2);
    CHECK_EQ(end->ebx, 0);
    CHECK_EQ(find(out, 0x1f, 1)->eax, 2);
    CHECK_EQ(find(out, 0x1f, 0)->edx, 5);
    CHECK_EQ((end->ecx >> 8) & 0xff, 0);
    const struct kvm_cpuid_entry2 *l4 = find(out, 4, 0);
    CHECK_EQ(l4->eax >> 26, 1);                /* cores per package - 1 */
    CHECK_EQ((l4->eax >> 14) & 0xfff, 1);      /* threads sharing L1 - 1 */
    free(in);
    free(out);
}

int main(void)
{
    RUN(single_cpu);
    RUN(topology_2s_2c_2t);
    return test_summary();
}
