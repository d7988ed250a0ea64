/*
 * consumer: the lab guest's memory workload.
 *
 *   consumer course [KIB_PER_S]            the course harness: one block grown with realloc,
 *                                          touching page after page at ~23 MB/s until realloc
 *                                          fails (or the OOM killer strikes), then freed at once
 *   consumer grow MIB [KIB_PER_S] [HOLD_S] the same, stopping at MIB, holding HOLD_S seconds
 *                                          (default 5), then freeing everything
 *   consumer steps SPEC [KIB_PER_S]        SPEC is a comma list of g<MIB> (allocate and touch),
 *                                          h<S> (hold), f<MIB> (free), e.g. g256,h10,f128,h5,f128
 *
 * Progress goes to stdout (the guest console), one line per 64 MiB, so the host can follow it.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024UL)
/* The course harness touched one page per ~100 us: about 23 MB/s once its overheads count. */
#define DEFAULT_KIB_PER_S (23UL * 1000UL * 1000UL / 1024UL)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Paces page touching: after `done_kib` KiB, sleep until rate * elapsed catches up. */
struct pacer { double start; unsigned long kib_per_s; unsigned long done_kib; };

static void pace(struct pacer *p, unsigned long kib) {
    p->done_kib += kib;
    double due = p->start + (double)p->done_kib / (double)p->kib_per_s;
    double wait = due - now_s();
    if (wait > 0) {
        struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
        nanosleep(&ts, NULL);
    }
}

static void progress(const char *what, unsigned long bytes) {
    printf("consumer: %s %lu MiB\n", what, bytes / MIB);
    fflush(stdout);
}

/* Grows one block with realloc, 1 MiB at a time, touching each new page. Returns the size
 * reached; *block is the (still allocated) block. Stops at limit (0: none) or on failure. */
static unsigned long grow_block(char **block, unsigned long limit, struct pacer *p) {
    unsigned long size = 0;
    for (;;) {
        if (limit && size >= limit) break;
        char *bigger = realloc(*block, size + MIB);
        if (!bigger) {
            progress("allocation failed at", size);
            break;
        }
        *block = bigger;
        for (unsigned long off = size; off < size + MIB; off += PAGE) {
            bigger[off] = 1;
            pace(p, PAGE / 1024);
        }
        size += MIB;
        if (size % (64 * MIB) == 0) progress("holding", size);
    }
    return size;
}

static int steps(const char *spec, struct pacer *p) {
    /* Chunks of 1 MiB, so that freeing part of the memory really returns it. */
    static char *chunks[1 << 16];
    unsigned long n = 0;
    char *copy = strdup(spec), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned long v = strtoul(tok + 1, NULL, 10);
        if (tok[0] == 'g') {
            for (unsigned long i = 0; i < v && n < (1 << 16); i++) {
                char *c = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (c == MAP_FAILED) { progress("allocation failed at", n * MIB); break; }
                for (unsigned long off = 0; off < MIB; off += PAGE) { c[off] = 1; pace(p, PAGE / 1024); }
                chunks[n++] = c;
                if (n % 64 == 0) progress("holding", n * MIB);
            }
            progress("holding", n * MIB);
        } else if (tok[0] == 'h') {
            sleep((unsigned)v);
        } else if (tok[0] == 'f') {
            for (unsigned long i = 0; i < v && n > 0; i++) munmap(chunks[--n], MIB);
            progress("holding", n * MIB);
        } else {
            fprintf(stderr, "consumer: bad step '%s'\n", tok);
            return 2;
        }
    }
    while (n > 0) munmap(chunks[--n], MIB);
    progress("freed, holding", 0);
    free(copy);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: consumer course [KIB_PER_S] | grow MIB [KIB_PER_S] [HOLD_S] | steps SPEC [KIB_PER_S]\n");
        return 2;
    }
    struct pacer p = { now_s(), DEFAULT_KIB_PER_S, 0 };
    const char *mode = argv[1];
    if (strcmp(mode, "course") == 0 || strcmp(mode, "grow") == 0) {
        int course = strcmp(mode, "course") == 0;
        unsigned long limit = course ? 0 : (argc > 2 ? strtoul(argv[2], NULL, 10) * MIB : 0);
        int rate_arg = course ? 2 : 3;
        if (argc > rate_arg) p.kib_per_s = strtoul(argv[rate_arg], NULL, 10);
        unsigned hold = (!course && argc > 4) ? (unsigned)strtoul(argv[4], NULL, 10) : (course ? 0 : 5);
        if (p.kib_per_s == 0) p.kib_per_s = DEFAULT_KIB_PER_S;
        printf("consumer: start %s, %lu KiB/s\n", mode, p.kib_per_s);
        fflush(stdout);
        char *block = NULL;
        unsigned long size = grow_block(&block, limit, &p);
        progress("reached", size);
        sleep(hold);
        free(block);
        progress("freed", size);
        return 0;
    }
    if (strcmp(mode, "steps") == 0 && argc > 2) {
        if (argc > 3) p.kib_per_s = strtoul(argv[3], NULL, 10);
        if (p.kib_per_s == 0) p.kib_per_s = DEFAULT_KIB_PER_S;
        return steps(argv[2], &p);
    }
    fprintf(stderr, "consumer: unknown mode '%s'\n", mode);
    return 2;
}
