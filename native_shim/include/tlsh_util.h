/* Small process helpers shared by every extension. */
#ifndef TLSH_UTIL_H
#define TLSH_UTIL_H
#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
int64_t tlsh_now_ns(void);                    /* CLOCK_MONOTONIC, ns */
void *tlsh_shared_map(size_t size);           /* MAP_SHARED|MAP_ANONYMOUS, NULL on error */
int tlsh_shared_unmap(void *p, size_t size);
/* PR_SET_PDEATHSIG, then verify the parent is still expected_ppid (closes the
 * race where the parent died before the call).  Returns 0, or -1 when the
 * parent is already gone. */
int tlsh_set_pdeathsig(int sig, int expected_ppid);
/* cffi:end */
#endif
