/* stdio back end: the terminal in raw mode (restored on every exit path).
 * The Ctrl-a escapes are the mux's (chardev_mux.c): -nographic puts one on
 * stdio. */
#include "chardev/chardev_internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* The terminal is one per process, so its saved state is process-wide: the
 * one piece of global state outside the log, needed by the exit paths
 * (atexit, fatal signals) that have no VM at hand. */
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

void chardev_restore_terminal(void)
{
    if (termios_saved) {
        tcsetattr(0, TCSANOW, &saved_termios);
        termios_saved = 0;
    }
}

static void chardev_restore_on_signal(int sig)
{
    chardev_restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

int chardev_stdio_open(struct chardev *c, char *err, size_t errlen)
{
    c->in_fd = 0;
    c->out_fd = 1;
    if (isatty(0) && tcgetattr(0, &saved_termios) == 0) {
        struct termios t = saved_termios;
        /* Raw input; output post-processing stays on (the guest sends CRLF
         * itself, OPOST only matters for a bare LF). Ctrl-C signals
         * kvmbox, as with QEMU's -serial stdio, unless signal=off or
         * -nographic (where Ctrl-a x quits and Ctrl-C belongs to the
         * guest). */
        t.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR |
                                 IGNCR | ICRNL | IXON);
        t.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | IEXTEN);
        if (c->no_signals)
            t.c_lflag &= ~(unsigned)ISIG;
        t.c_cflag &= ~(unsigned)(CSIZE | PARENB);
        t.c_cflag |= CS8;
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        termios_saved = 1;
        atexit(chardev_restore_terminal);
        signal(SIGTERM, chardev_restore_on_signal);
        signal(SIGHUP, chardev_restore_on_signal);
        signal(SIGQUIT, chardev_restore_on_signal);
        if (tcsetattr(0, TCSANOW, &t) < 0) {
            termios_saved = 0;
            snprintf(err, errlen, "-serial stdio: cannot set the terminal to raw mode");
            return -1;
        }
    }
    return 0;
}
