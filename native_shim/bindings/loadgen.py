"""Load generator: native epoll client loop (tlsh_loadgen_run)."""

SOURCES = ["loadgen.c"]

INCLUDES = """
#include "tlsh_loadgen.h"
"""

TYPES = """
struct tlsh_lg_config {
    char host[64];
    int port;
    int nconns;
    int conn_base;
    int window;
    int churn;
    int resume;
    int tls_version;
    double rate;
    double duration_s;
    double timeout_s;
    char ciphers[128];
    int reject_every;
    int rekey_every;
    double ramp_s;
};
"""

FUNCTIONS = """
int tlsh_loadgen_run(const struct tlsh_lg_config *cfg, struct tlsh_lg_counters *c,
                     volatile int *stop);
"""

CUSTOMIZATIONS = ""
