/* kvmbox-img: qemu-img's command line for kvmbox's image formats. */
#include "img/img.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
} verbs[] = {
    { "create", img_create }, { "info", img_info }, { "check", img_check },
    { "convert", img_convert }, { "resize", img_resize }, { "map", img_map },
    { "compare", img_compare }, { "snapshot", img_snapshot }, { "measure", img_measure },
    { "commit", img_commit }, { "rebase", img_rebase }, { "amend", img_amend },
    { "bench", img_bench },
};

static void usage(FILE *f)
{
    fprintf(f,
"kvmbox-img: qemu-img's verbs for kvmbox's image formats (raw, qcow2)\n"
"usage: kvmbox-img [standard options] command [command options]\n"
"\n"
"Command syntax:\n"
"  amend [-f fmt] [-p] [-q] -o options filename\n"
"  bench [-c count] [-d depth] [-f fmt] [-n] [-o offset] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] filename\n"
"  check [-f fmt] [--output=ofmt] [-r [leaks | all]] [-q] filename\n"
"  commit [-f fmt] [-t cache] [-p] [-q] [-d] filename\n"
"  compare [-f fmt] [-F fmt] [-p] [-q] [-s] filename1 filename2\n"
"  convert [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] [-o options] [-W] filename [filename2 [...]] output_filename\n"
"  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]\n"
"  info [-f fmt] [--output=ofmt] [--backing-chain] filename\n"
"  map [-f fmt] [--output=ofmt] [--start-offset=OFFSET] [--max-length=LEN] filename\n"
"  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] filename]\n"
"  snapshot [-l | -a snapshot | -c snapshot | -d snapshot] [-q] filename\n"
"  rebase [-f fmt] [-p] [-q] [-u] -b backing_file [-F backing_fmt] filename\n"
"  resize [-f fmt] [--shrink] [-q] filename [+ | -]size\n"
"\n"
"Supported formats: qcow2 raw\n");
}

int main(int argc, char **argv)
{
    log_set_level(LOG_ERROR);
    if (argc < 2) {
        img_err("Not enough arguments");
        fprintf(stderr, "Try 'kvmbox-img --help' for more information\n");
        return 1;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("kvmbox-img version 0.1 (qemu-img 7.2 compatible syntax)\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(argv[1], verbs[i].name))
            return verbs[i].fn(argc - 1, argv + 1);
    img_err("Command not found: %s", argv[1]);
    return 1;
}
