/* Cache-line round trip between two CPUs, in ns: tells whether two vCPUs share a cache.
 *
 *   gcc -O2 -pthread scripts/core_to_core.c -o core_to_core && ./core_to_core [CPU_A CPU_B]
 *
 * Two threads, pinned to CPU_A and CPU_B (default 0 and 1), pass a counter back and forth
 * through one cache line 3000 times; the program prints the mean round trip in ns. On our
 * 2-vCPU EPYC VM (2026-12-05) it read 72-80 ns most of the time (one L3) and ~330 ns in
 * spells of seconds to minutes (the vCPUs on different dies), when one ONNX Runtime session
 * with 2 intra-op threads ran 2.5x slower (README, "Items side by side";
 * scripts/server_loop.py --probe runs it around every block). Linux only. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic long counter __attribute__((aligned(64)));
static _Atomic int done;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static cpu_set_t only(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return set;
}

/* Answers every odd value with the next even one. */
static void *answer(void *unused) {
    (void)unused;
    long want = 1;
    while (!atomic_load(&done)) {
        if (atomic_load_explicit(&counter, memory_order_acquire) == want) {
            atomic_store_explicit(&counter, want + 1, memory_order_release);
            want += 2;
        }
    }
    return NULL;
}

static void trips(long *v, int n) {
    for (int i = 0; i < n; i++) {
        atomic_store_explicit(&counter, *v + 1, memory_order_release);
        while (atomic_load_explicit(&counter, memory_order_acquire) != *v + 2) {
        }
        *v += 2;
    }
}

int main(int argc, char **argv) {
    int cpu_a = argc > 2 ? atoi(argv[1]) : 0;
    int cpu_b = argc > 2 ? atoi(argv[2]) : 1;
    cpu_set_t set_a = only(cpu_a), set_b = only(cpu_b);
    if (cpu_a < 0 || cpu_a >= CPU_SETSIZE || pthread_setaffinity_np(pthread_self(), sizeof set_a, &set_a) != 0) {
        fprintf(stderr, "core_to_core: cannot run on CPU %d\n", cpu_a);
        return 2;
    }
    pthread_attr_t attr;
    pthread_t other;
    pthread_attr_init(&attr);
    if (cpu_b < 0 || cpu_b >= CPU_SETSIZE || pthread_attr_setaffinity_np(&attr, sizeof set_b, &set_b) != 0
        || pthread_create(&other, &attr, answer, NULL) != 0) {
        fprintf(stderr, "core_to_core: cannot run on CPU %d\n", cpu_b);
        return 2;
    }
    long v = 0;
    trips(&v, 500); /* both threads running and the line warm */
    double start = now();
    trips(&v, 3000);
    printf("%.1f\n", 1e9 * (now() - start) / 3000);
    atomic_store(&done, 1);
    pthread_join(other, NULL);
    return 0;
}
