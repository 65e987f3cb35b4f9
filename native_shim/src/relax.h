/* What a spinning waiter does between two looks at a lock word: the CPU's
 * pause (x86) or yield (arm64) hint, nothing elsewhere.  One definition for
 * the arena's lock (arena.c) and the stand's spin locks (lock.c). */
#ifndef TLSH_RELAX_H
#define TLSH_RELAX_H

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
