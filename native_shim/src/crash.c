/* A crashing process records its own stack: nothing can dump it afterwards.
 * First backtrace() (in-process, exported symbols), then eu-stack on itself
 * (all threads, better symbols) under a short timeout. */
#define _GNU_SOURCE
#include "stand_internal.h"
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static char crash_path[300];
static char self_pid[16];
static char altstack[65536];

static void put(int fd, const char *s) { if (write(fd, s, strlen(s)) < 0) { /* nothing */ } }

/* The faulting instruction: its address and first 16 bytes, for the
 * watchdog to decode (an aligned vector access on a misaligned block). */
static void put_insn(int fd, int code, void *uc)
{
#if defined(__x86_64__)
    const unsigned char *ip = (const unsigned char *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
    char line[160];
    /* read through the kernel: a jump to NULL or to unmapped memory must
     * not fault again in here (the record would end at its first line) */
    unsigned char bytes[16];
    struct iovec local = { bytes, sizeof(bytes) }, remote = { (void *)ip, sizeof(bytes) };
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    int n = snprintf(line, sizeof(line), "ip %p code %d insn", (const void *)ip, code);
    if (got <= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " unreadable");
    for (int i = 0; i < (int)got && n < (int)sizeof(line) - 4; i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " %02x", bytes[i]);
    snprintf(line + n, sizeof(line) - (size_t)n, "\n");
    put(fd, line);
    if (got <= 0) {
        /* a call through a bad pointer: the return address on top of the
         * stack names the caller, which the unwinder cannot reach from here */
        void *ret = NULL;
        struct iovec l2 = { &ret, sizeof(ret) };
        struct iovec r2 = { (void *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP], sizeof(ret) };
        if (process_vm_readv(getpid(), &l2, 1, &r2, 1, 0) == (ssize_t)sizeof(ret)) {
            put(fd, "called from\n");
            backtrace_symbols_fd(&ret, 1, fd);
        }
    }
#else
    (void)fd; (void)code; (void)uc;
#endif
}

static void on_crash(int sig, siginfo_t *si, void *uc)
{
    int fd = open(crash_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        char line[160];
        snprintf(line, sizeof(line), "signal %d (%s) address %p pid %s\n",
                 sig, strsignal(sig), si ? si->si_addr : NULL, self_pid);
        put(fd, line);
        if (uc && si && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL))
            put_insn(fd, si->si_code, uc);
        put(fd, "--- backtrace\n");
        void *bt[64];
        int n = backtrace(bt, 64);
        backtrace_symbols_fd(bt, n, fd);
        put(fd, "--- eu-stack\n");
        pid_t p = fork();
        if (p == 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            execlp("eu-stack", "eu-stack", "-p", self_pid, (char *)NULL);
            _exit(127);
        }
        if (p > 0) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            int st, waited = 0;
            while (waitpid(p, &st, WNOHANG) == 0) {
                if (++waited > 300) { kill(p, SIGKILL); waitpid(p, &st, 0); break; }
                nanosleep(&ts, NULL);
            }
        }
        close(fd);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* In the parent, before fork: backtrace() dlopens libgcc_s on first use.
 * Doing it once here keeps the children from each mutating the loader's
 * state, which with --memory interpose lives in the shared arena. */
void tlsh_crash_prepare(void)
{
    void *warm[2];
    backtrace(warm, 2);
}

void tlsh_stand_crash_handler(const char *dir)
{
    tlsh_crash_prepare();
    tlsh_install_crash_handler(dir, -1);
}

void tlsh_install_crash_handler(const char *dir, int slot)
{
    if (!dir || !*dir) return;
    snprintf(self_pid, sizeof(self_pid), "%d", (int)getpid());
    snprintf(crash_path, sizeof(crash_path), "%s/crash-%d-%s.txt", dir, slot, self_pid);
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}
