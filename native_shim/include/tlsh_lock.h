/* Application lock flavours, all living in shared memory, as multi-process
 * SIP servers build them:
 *   spin   test-and-set, 1024 spins, then sched_yield() on every retry
 *          (OpenSIPS FAST_LOCK -DADAPTIVE_WAIT -DADAPTIVE_WAIT_LOOPS=1024)
 *   futex  PTHREAD_PROCESS_SHARED mutex
 *   robust robust process-shared mutex (a dead owner is detected) */
#ifndef TLSH_LOCK_H
#define TLSH_LOCK_H
#include <pthread.h>
#include <stdint.h>

/* cffi:begin */
enum tlsh_lock_flavor { TLSH_LOCK_SPIN = 0, TLSH_LOCK_FUTEX = 1, TLSH_LOCK_ROBUST = 2 };

#define TLSH_SPIN_LOOPS 1024

/* Lock ids as published in a status slot (lock_waiting, lock_held): a
 * connection's lock has its connection number, the others these. */
#define TLSH_LOCK_ID_GLOBAL 1000000   /* lock ids >= this are global locks */
#define TLSH_LOCK_ID_RAND 1000001     /* the server's lock around the RAND method */
#define TLSH_LOCK_ID_CTX 1000002      /* the lock around the current SSL_CTX (reload) */
#define TLSH_LOCK_ID_WRITE 2000000    /* + connection id: its write lock (split locks) */

typedef struct tlsh_lock {
    volatile int32_t word;        /* spin: 0 free, 1 taken */
    int32_t flavor;
    volatile int32_t holder_pid;  /* pid of the holder, 0 when free (published for the watchdog) */
    int32_t id;                   /* lock id, published in worker status while waited for */
    uint64_t acquisitions;
    uint64_t owner_died;          /* robust: times the previous owner died holding it */
    pthread_mutex_t mutex;        /* futex and robust flavours */
} tlsh_lock;

int tlsh_lock_init(tlsh_lock *l, int flavor, int id);   /* 0 or errno */
/* 0 when taken; for a robust lock whose owner died, the lock is made
 * consistent, taken, and 1 is returned. */
int tlsh_lock_get(tlsh_lock *l);
int tlsh_lock_try(tlsh_lock *l);                        /* 0 taken, EBUSY */
void tlsh_lock_release(tlsh_lock *l);
void tlsh_lock_destroy(tlsh_lock *l);
const char *tlsh_lock_flavor_name(int flavor);
/* cffi:end */

#endif
