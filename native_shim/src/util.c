#define _GNU_SOURCE
#include "tlsh_util.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int64_t tlsh_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void *tlsh_shared_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int tlsh_shared_unmap(void *p, size_t size) { return munmap(p, size); }

int tlsh_set_pdeathsig(int sig, int expected_ppid)
{
    if (prctl(PR_SET_PDEATHSIG, sig) != 0)
        return -1;
    if (expected_ppid > 0 && getppid() != expected_ppid)
        return -1;
    return 0;
}

