/* stdio back end: the terminal in raw mode (restored on every exit path) and,
 * under -nographic, QEMU's Ctrl-a escapes: Ctrl-a x quits, Ctrl-a h prints
 * help, Ctrl-a Ctrl-a sends one Ctrl-a. Ctrl-a c (the monitor) arrives with
 * the monitor issue. */
#include "chardev/chardev_internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define ESCAPE_CHAR 0x01    /* Ctrl-a */

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
         * itself, OPOST only matters for a bare LF). Without -nographic
         * Ctrl-C still signals kvmbox, as with QEMU's -serial stdio. */
        t.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR |
                                 IGNCR | ICRNL | IXON);
        t.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | IEXTEN);
        if (c->nographic)
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

size_t chardev_stdio_filter(struct chardev *c, uint8_t *buf, size_t len)
{
    if (!c->nographic)
        return len;
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = buf[i];
        if (!c->escape_pending) {
            if (ch == ESCAPE_CHAR)
                c->escape_pending = true;
            else
                buf[out++] = ch;
            continue;
        }
        c->escape_pending = false;
        switch (ch) {
        case 'x':
            fprintf(stderr, "QEMU: Terminated\r\n");
            if (c->hooks.quit)
                c->hooks.quit(c->hooks.opaque);
            break;
        case 'h':
        case '?':
            fprintf(stderr, "\r\nC-a h    print this help\r\n"
                            "C-a x    exit emulator\r\n"
                            "C-a C-a  sends C-a\r\n"
                            "C-a c    switch between console and monitor "
                            "(not available: no monitor yet)\r\n");
            break;
        case ESCAPE_CHAR:
            buf[out++] = ESCAPE_CHAR;
            break;
        default:
            break;      /* unknown escape: swallowed, as QEMU does */
        }
    }
    return out;
}
