/* qemu-img's bad option messages (see opterr.h). */
#include "img/opterr.h"
#include "img/img.h"

#include <stdio.h>

int img_bad_option(int c, const char *opt)
{
    img_err("%s '%s'", c == ':' ? "missing argument for option" : "unrecognized option", opt);
    fprintf(stderr, "Try 'kvmbox-img --help' for more information\n");
    return 1;
}
