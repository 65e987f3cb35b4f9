"""Library-independent pieces: arena, locks, status segment layout, SIP."""

SOURCES = ["arena.c", "lock.c", "sip.c", "util.c"]

INCLUDES = """
#include "tlsh_arena.h"
#include "tlsh_lock.h"
#include "tlsh_status.h"
#include "tlsh_sip.h"
#include "tlsh_util.h"
"""

TYPES = """
#define TLSH_ARENA_ALIGN ...
#define TLSH_ARENA_MAX_PROCS ...
#define TLSH_ARENA_MAX_EVENTS ...
#define TLSH_STATUS_MAGIC ...
#define TLSH_SLOT_MAGIC ...
#define TLSH_STATUS_VERSION ...
#define TLSH_MAX_SLOTS ...
#define TLSH_LG_MAGIC ...
#define TLSH_LAT_BUCKETS ...
#define TLSH_SIP_MAX_MSG ...
#define TLSH_SPIN_LOOPS ...

enum tlsh_arena_event_kind { TLSH_EV_NONE, TLSH_EV_DOUBLE_FREE, TLSH_EV_WILD_FREE,
    TLSH_EV_OUT_OF_MEMORY, TLSH_EV_BAD_REALLOC };
struct tlsh_arena_event { int32_t kind; int32_t pid; uint64_t offset; int32_t prev_pid;
    int32_t inside; int64_t time_ns; };
struct tlsh_arena_proc { int32_t pid; uint64_t allocs; uint64_t frees; ...; };
struct tlsh_arena_stats { uint64_t size; uint64_t in_use; uint64_t peak; uint64_t requested;
    uint64_t n_alloc; uint64_t n_free; uint64_t n_fail; uint64_t n_double_free;
    uint64_t n_wild_free; uint64_t n_events; };
typedef struct tlsh_arena tlsh_arena;

enum tlsh_lock_flavor { TLSH_LOCK_SPIN, TLSH_LOCK_FUTEX, TLSH_LOCK_ROBUST };
typedef struct tlsh_lock { int32_t flavor; int32_t holder_pid; int32_t id;
    uint64_t acquisitions; uint64_t owner_died; ...; } tlsh_lock;

enum tlsh_role { TLSH_ROLE_NONE, TLSH_ROLE_WORKER, TLSH_ROLE_LISTENER };
enum tlsh_activity { TLSH_ACT_STARTING, TLSH_ACT_IDLE, TLSH_ACT_ACCEPT, TLSH_ACT_HANDSHAKE,
    TLSH_ACT_READ, TLSH_ACT_WRITE, TLSH_ACT_LOCK_WAIT, TLSH_ACT_CLOSE, TLSH_ACT_FAULT,
    TLSH_ACT_EXITED, TLSH_ACT_ATTACH, TLSH_ACT_RANDOM };
enum tlsh_slot_state { TLSH_SLOT_UNUSED, TLSH_SLOT_ALIVE, TLSH_SLOT_DEAD };
struct tlsh_slot {
    uint64_t magic; int32_t pid; int32_t role; int32_t state; int32_t activity;
    int64_t activity_since_ns; int32_t lock_waiting; int32_t lock_held; int32_t conn;
    int32_t exit_signal; int32_t exit_code; int64_t last_progress_ns; uint64_t requests;
    uint64_t handshakes; uint64_t errors; uint64_t malformed; uint64_t handoffs;
    uint64_t closed; uint64_t dispatches; int64_t exit_ns; uint8_t rand[32]; int32_t rand_state;
    uint64_t magic2; ...; };
struct tlsh_status {
    uint64_t magic; uint32_t version; uint32_t nslots; int32_t stand_pid; int32_t port;
    int32_t ready; int32_t stopping; int64_t start_ns; uint64_t arena_base; uint64_t arena_size;
    struct tlsh_arena_stats arena; int32_t n_arena_events;
    struct tlsh_arena_event arena_events[...];
    uint64_t accepted; uint64_t dispatched; uint64_t cross_handoffs; uint64_t conns_open;
    uint64_t conns_closed; uint64_t rand_calls; uint64_t rand_reentries; char lib_version[...]; char error[...]; uint64_t magic2;
    struct tlsh_slot slots[]; ...; };
struct tlsh_lg_counters {
    uint64_t magic; int32_t pid; int32_t done; int32_t ready; int32_t nconns; uint64_t sent;
    uint64_t answered; uint64_t bad; uint64_t timed_out; uint64_t connects;
    uint64_t handshakes; uint64_t resumed; uint64_t conn_errors; int64_t last_answer_ns;
    int64_t updated_ns; int64_t start_ns; int64_t ready_ns; uint64_t rejected; uint64_t rekeys; uint64_t lat_hist[...]; char error[...]; uint64_t magic2; ...; };
"""

FUNCTIONS = """
tlsh_arena *tlsh_arena_create(size_t size);
void tlsh_arena_destroy(tlsh_arena *a);
void *tlsh_arena_malloc(tlsh_arena *a, size_t n);
void *tlsh_arena_calloc(tlsh_arena *a, size_t nmemb, size_t n);
void *tlsh_arena_realloc(tlsh_arena *a, void *p, size_t n);
void tlsh_arena_free(tlsh_arena *a, void *p);
int tlsh_arena_contains(const tlsh_arena *a, const void *p);
uintptr_t tlsh_arena_base(const tlsh_arena *a);
size_t tlsh_arena_size(const tlsh_arena *a);
void tlsh_arena_set_proc_slot(tlsh_arena *a, int slot);
void tlsh_arena_get_stats(const tlsh_arena *a, struct tlsh_arena_stats *out);
int tlsh_arena_get_procs(const tlsh_arena *a, struct tlsh_arena_proc *out, int max);
int tlsh_arena_get_events(const tlsh_arena *a, struct tlsh_arena_event *out, int max);

int tlsh_lock_init(tlsh_lock *l, int flavor, int id);
int tlsh_lock_get(tlsh_lock *l);
int tlsh_lock_try(tlsh_lock *l);
void tlsh_lock_release(tlsh_lock *l);
void tlsh_lock_destroy(tlsh_lock *l);
const char *tlsh_lock_flavor_name(int flavor);

uint64_t tlsh_status_bytes(int nslots);
int tlsh_lat_bucket(uint64_t us);

int tlsh_sip_frame(const char *buf, size_t len, size_t *msg_len);
int tlsh_sip_reply(const char *req, size_t len, char *out, size_t cap);
int tlsh_sip_parse_reply(const char *msg, size_t len, int *status,
                         const char **callid, size_t *callid_len, unsigned long *cseq);
int tlsh_sip_request(char *out, size_t cap, unsigned conn, unsigned long seq);

void *tlsh_shared_map(size_t size);
int tlsh_shared_unmap(void *p, size_t size);
int tlsh_set_pdeathsig(int sig, int expected_ppid);
int64_t tlsh_now_ns(void);
"""

CUSTOMIZATIONS = ""
