/* Verbs not written yet. */
#include "img/img.h"

#define STUB(fn, name) int fn(int argc, char **argv) { img_err("'%s' is not implemented yet", name); return 1; }
STUB(img_info, "info")
STUB(img_check, "check")
STUB(img_convert, "convert")
STUB(img_resize, "resize")
STUB(img_map, "map")
STUB(img_compare, "compare")
STUB(img_snapshot, "snapshot")
STUB(img_measure, "measure")
STUB(img_commit, "commit")
STUB(img_rebase, "rebase")
STUB(img_amend, "amend")
STUB(img_bench, "bench")
