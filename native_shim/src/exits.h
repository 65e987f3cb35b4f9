/* How the stand's processes end when C decides it (the parent reads the
 * status).  The same numbers are named in Python as harness.vocab.ProcExit;
 * tests/test_native_structure.py checks that the two agree. */
#ifndef TLSH_EXITS_H
#define TLSH_EXITS_H

#define TLSH_EXIT_ORPHANED 70       /* the parent was gone before the death signal was set */
#define TLSH_EXIT_NO_RESOURCES 71   /* the I/O process could not allocate or start its threads */

#endif
