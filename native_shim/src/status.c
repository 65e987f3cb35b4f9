/* The process side of the status segment: which slot is this process's,
 * and the activity names (from the one list in tlsh_status.h). */
#define _GNU_SOURCE
#include "tlsh_status.h"
#include "tlsh_util.h"
#include <string.h>
#include <unistd.h>

struct tlsh_slot *tlsh_self_slot;

#define TLSH_ACT_NAME(id, name) name,
static const char *const ACT_NAMES[] = { TLSH_ACTIVITIES(TLSH_ACT_NAME) };

/* the numbers are the segment's format: a reordered list must not build */
_Static_assert(TLSH_ACT_STARTING == 0 && TLSH_ACT_LOCK_WAIT == 6 && TLSH_ACT_RANDOM == 11,
               "activity numbers changed");

int tlsh_activity_count(void) { return (int)(sizeof(ACT_NAMES) / sizeof(ACT_NAMES[0])); }

const char *tlsh_activity_name(int act)
{
    return act >= 0 && act < tlsh_activity_count() ? ACT_NAMES[act] : NULL;
}

void tlsh_slot_init(struct tlsh_status *s, int slot, int role)
{
    struct tlsh_slot *w = &s->slots[slot];
    tlsh_self_slot = w;
    memset(w, 0, sizeof(*w));
    w->magic = TLSH_SLOT_MAGIC;
    w->magic2 = TLSH_SLOT_MAGIC;
    w->pid = getpid();
    w->role = role;
    w->state = TLSH_SLOT_ALIVE;
    w->lock_waiting = -1;
    w->lock_held = -1;
    w->conn = -1;
    tlsh_set_activity(w, TLSH_ACT_STARTING, tlsh_now_ns());
}
