#define _GNU_SOURCE
/* Application locks in shared memory: spin (OpenSIPS FAST_LOCK with
 * ADAPTIVE_WAIT), process-shared futex mutex, robust process-shared mutex. */
#include "tlsh_lock.h"
#include "relax.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

int tlsh_lock_init(tlsh_lock *l, int flavor, int id)
{
    pthread_mutexattr_t at;
    int rc;

    if (!l)
        return EINVAL;
    if (flavor != TLSH_LOCK_SPIN && flavor != TLSH_LOCK_FUTEX && flavor != TLSH_LOCK_ROBUST)
        return EINVAL;
    memset(l, 0, sizeof(*l));
    l->flavor = flavor;
    l->id = id;
    if (flavor == TLSH_LOCK_SPIN)
        return 0;
    if ((rc = pthread_mutexattr_init(&at)) != 0)
        return rc;
    rc = pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    if (rc == 0 && flavor == TLSH_LOCK_ROBUST)
        rc = pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&l->mutex, &at);
    pthread_mutexattr_destroy(&at);
    return rc;
}

static inline void taken(tlsh_lock *l)
{
    l->holder_pid = (int32_t)getpid();
    l->acquisitions++;
}

/* Robust mutex: the previous owner died holding it; we own it now. */
static int recover(tlsh_lock *l)
{
    int rc = pthread_mutex_consistent(&l->mutex);
    if (rc != 0) {
        pthread_mutex_unlock(&l->mutex);
        return rc;
    }
    l->owner_died++;
    taken(l);
    return 1;
}

int tlsh_lock_get(tlsh_lock *l)
{
    int rc;

    switch (l->flavor) {
    case TLSH_LOCK_SPIN: {
        int i = TLSH_SPIN_LOOPS;
        while (__atomic_exchange_n(&l->word, 1, __ATOMIC_ACQUIRE)) {
            if (i > 0) {
                i--;
                cpu_relax();
            } else {
                sched_yield();
            }
        }
        taken(l);
        return 0;
    }
    case TLSH_LOCK_FUTEX:
    case TLSH_LOCK_ROBUST:
        rc = pthread_mutex_lock(&l->mutex);
        if (rc == 0) {
            taken(l);
            return 0;
        }
        if (rc == EOWNERDEAD && l->flavor == TLSH_LOCK_ROBUST)
            return recover(l);
        return rc;
    default:
        return EINVAL;
    }
}

int tlsh_lock_try(tlsh_lock *l)
{
    int rc;

    switch (l->flavor) {
    case TLSH_LOCK_SPIN:
        if (__atomic_exchange_n(&l->word, 1, __ATOMIC_ACQUIRE))
            return EBUSY;
        taken(l);
        return 0;
    case TLSH_LOCK_FUTEX:
    case TLSH_LOCK_ROBUST:
        rc = pthread_mutex_trylock(&l->mutex);
        if (rc == 0) {
            taken(l);
            return 0;
        }
        if (rc == EOWNERDEAD && l->flavor == TLSH_LOCK_ROBUST) {
            /* taken and made consistent: report it as taken (0) */
            rc = recover(l);
            return rc == 1 ? 0 : rc;
        }
        return rc;
    default:
        return EINVAL;
    }
}

void tlsh_lock_release(tlsh_lock *l)
{
    l->holder_pid = 0;
    switch (l->flavor) {
    case TLSH_LOCK_SPIN:
        __atomic_store_n(&l->word, 0, __ATOMIC_RELEASE);
        break;
    case TLSH_LOCK_FUTEX:
    case TLSH_LOCK_ROBUST:
        pthread_mutex_unlock(&l->mutex);
        break;
    default:
        break;
    }
}

void tlsh_lock_destroy(tlsh_lock *l)
{
    if (!l)
        return;
    if (l->flavor == TLSH_LOCK_FUTEX || l->flavor == TLSH_LOCK_ROBUST)
        pthread_mutex_destroy(&l->mutex);
    l->holder_pid = 0;
    l->word = 0;
}

const char *tlsh_lock_flavor_name(int flavor)
{
    switch (flavor) {
    case TLSH_LOCK_SPIN: return "spin";
    case TLSH_LOCK_FUTEX: return "futex";
    case TLSH_LOCK_ROBUST: return "robust";
    default: return "unknown";
    }
}
