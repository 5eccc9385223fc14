/* hakmem.h: hakmem's own C interface, exported by libhakmem.so.
 *
 * Link with -lhakmem (pkg-config --cflags --libs hakmem after
 * scripts/install.sh PREFIX) or load it with LD_PRELOAD. The allocation
 * functions are the standard ones (malloc, free, ...): libhakmem.so
 * replaces them. This header adds what is hakmem's own: exact statistics,
 * trimming, options and the version.
 *
 * glibc's introspection calls are answered by hakmem too when libhakmem.so
 * is loaded: malloc_trim(pad) is hakmem_trim() (1 if a SuperSlab went back
 * to the system, else 0; pad is ignored), malloc_stats() is
 * hakmem_stats_print(), and mallinfo2() fills struct mallinfo2 so:
 *
 *   arena     bytes of mapped SuperSlabs
 *             (mapped_bytes - large_mapped_bytes - large_cached_bytes)
 *   ordblks   free_blocks: carved blocks on slab free lists
 *   smblks    0 (no fastbins)
 *   hblks     large_count: large blocks, each its own mapping
 *   hblkhd    large_mapped_bytes
 *   usmblks   0 (no peak kept)
 *   fsmblks   0 (no fastbins)
 *   uordblks  held_bytes: bytes the program holds
 *   fordblks  mapped_bytes - held_bytes: mapped but not held
 *   keepcost  bytes a trim would give back now (retained SuperSlabs and
 *             cached large regions)
 *
 * mallinfo() gives the same figures as int, each saturated at INT_MAX.
 *
 * All functions are thread-safe and never allocate. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1
#define HAKMEM_VERSION_PATCH 0

/* Exact process-wide figures (hakmem_std::stats()). "Held" bytes are what
 * the program holds: block sizes for small blocks, requested sizes for
 * large ones. Nothing is sampled or estimated. */
typedef struct hakmem_stats {
    size_t mapped_bytes;        /* bytes mapped by all heaps */
    size_t held_bytes;          /* bytes held by the program */
    size_t held_blocks;         /* blocks held by the program */
    size_t free_blocks;         /* carved blocks on slab free lists */
    size_t pending_remote;      /* blocks freed by other threads, not yet collected */
    size_t superslabs_mapped;   /* SuperSlabs mapped now (retained included) */
    size_t superslabs_retained; /* empty SuperSlabs kept for reuse */
    size_t superslabs_created;  /* SuperSlabs mapped since the start */
    size_t superslabs_released; /* SuperSlabs returned since the start */
    size_t large_count;         /* large blocks not yet unmapped */
    size_t large_bytes;         /* requested bytes of live large blocks */
    size_t large_mapped_bytes;  /* bytes mapped for live large blocks */
    size_t large_cached_bytes;  /* freed large regions kept for reuse */
    size_t thread_heaps;        /* heaps owned by live threads */
    size_t abandoned_heaps;     /* heaps of exited threads still holding blocks */
    size_t unread_heaps;        /* heaps that could not be read (0 on current Linux) */
    size_t os_mapped_bytes;     /* bytes mapped from the OS right now */
    size_t decommit_failures;   /* madvise calls the kernel refused */
    size_t unmap_failures;      /* munmap calls the kernel refused */
} hakmem_stats_t;

/* Fills *out with the figures now. Returns 0, or EINVAL for a null out. */
int hakmem_stats_get(hakmem_stats_t *out);

/* Prints the stats table (as HAKMEM_SHOW_STATS=1 does at exit) to stderr. */
void hakmem_stats_print(void);

/* Returns free memory to the system now: the calling thread's cached and
 * empty memory, retained SuperSlabs, dead threads' heaps. Returns the
 * number of SuperSlabs released. */
size_t hakmem_trim(void);

/* Options, one per HAKMEM_* environment variable. */
typedef enum hakmem_option {
    HAKMEM_OPTION_RETAIN = 0,         /* HAKMEM_RETAIN */
    HAKMEM_OPTION_LARGE_CACHE = 1,    /* HAKMEM_LARGE_CACHE */
    HAKMEM_OPTION_PURGE_DELAY_MS = 2, /* HAKMEM_PURGE_DELAY_MS */
    HAKMEM_OPTION_BACKGROUND = 3,     /* HAKMEM_BACKGROUND (0/1) */
    HAKMEM_OPTION_SHOW_STATS = 4,     /* HAKMEM_SHOW_STATS (0/1), settable */
    HAKMEM_OPTION_VERBOSE = 5         /* HAKMEM_VERBOSE (0/1) */
} hakmem_option_t;

/* The value in force, or -1 for an unknown option. */
long long hakmem_option_get(hakmem_option_t opt);

/* Sets an option at run time. Only HAKMEM_OPTION_SHOW_STATS (0 or 1) can
 * change: the others are fixed when the allocator is set up (each thread
 * heap copies retain and large_cache when it is made; the background
 * thread is started and paced then), so set them with the environment.
 * Returns 0, EINVAL (unknown option or bad value) or EPERM (fixed). */
int hakmem_option_set(hakmem_option_t opt, long long value);

/* The library's version, "MAJOR.MINOR.PATCH" (a static string). */
const char *hakmem_version(void);

#ifdef __cplusplus
}
#endif

#endif /* HAKMEM_H */
