/* Sizes as QEMU reads them: a number with an optional k/M/G/T/P/E suffix
 * (binary units, either case; "b" for bytes), a bare number in default_unit. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

int config_parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    char *end;
    /* QEMU accepts fractions ("1.5G"); so do we, with exact integer parts. */
    unsigned long long whole = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    unsigned long long frac_num = 0, frac_den = 1;
    if (*end == '.') {
        end++;
        while (isdigit((unsigned char)*end)) {
            if (frac_den > 1000000000ULL)
                return -EINVAL;
            frac_num = frac_num * 10 + (unsigned)(*end - '0');
            frac_den *= 10;
            end++;
        }
    }
    uint64_t unit = default_unit;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'b': unit = 1; break;
        case 'k': unit = 1ULL << 10; break;
        case 'm': unit = 1ULL << 20; break;
        case 'g': unit = 1ULL << 30; break;
        case 't': unit = 1ULL << 40; break;
        case 'p': unit = 1ULL << 50; break;
        case 'e': unit = 1ULL << 60; break;
        default: return -EINVAL;
        }
        end++;
        /* Allow "MB"/"MiB"-free forms only: QEMU rejects "128MB" too. */
        if (*end)
            return -EINVAL;
    }
    if (unit && whole > UINT64_MAX / unit)
        return -ERANGE;
    uint64_t v = whole * unit;
    uint64_t frac = (uint64_t)((__uint128_t)frac_num * unit / frac_den);
    if (v + frac < v)
        return -ERANGE;
    *out = v + frac;
    return 0;
}
