/* attnd_pool.c - worker threads for parallel loops (attnd_pool.h).
 *
 * A run is published under the mutex with a new generation number; workers
 * wake, claim task indices with an atomic counter, and the last one to finish
 * signals the caller. The caller also claims tasks, so a pool of size 1 has no
 * worker threads at all.
 *
 * A decode step is a few hundred short runs (one per matmul, tens of
 * microseconds each), and a futex wake-up costs about as much in a VM. So
 * both sides spin briefly before sleeping: a worker watches the generation
 * for SPIN_ROUNDS loads after a run, the caller watches the busy count, and
 * only then do they block on the condition variables. The atomics carry the
 * hand-off; the mutex and condition variables only put sleepers to sleep. */
#include "attnd_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Loads a worker or caller spins through before blocking: ~0.1 ms, longer
 * than the gap between two matmuls of a step, short enough not to matter
 * when the pool is idle between steps. */
#define SPIN_ROUNDS 65536u

/* Between two loads of a spin: a compiler barrier only. x86's `pause` is
 * the textbook choice, but in these VMs a pause loop exits to the
 * hypervisor (pause-loop exiting) and measured 2x slower decode. */
static inline void cpu_relax(void)
{
    __asm__ volatile("" ::: "memory");
}

struct attnd_pool {
    uint32_t n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a new generation was published, or shutdown */
    pthread_cond_t done; /* the running generation finished */
    atomic_uint_fast64_t generation;
    atomic_bool shutdown;
    /* the current run */
    attnd_pool_fn fn;
    void *ctx;
    uint32_t n_tasks;
    atomic_uint next;
    atomic_uint busy; /* workers still inside the current run */
};

struct worker_arg {
    attnd_pool *pool;
    uint32_t index;
};

static void run_tasks(attnd_pool *p, attnd_pool_fn fn, void *ctx, uint32_t n_tasks,
                      uint32_t thread)
{
    for (;;) {
        uint32_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= n_tasks)
            break;
        fn(ctx, t, thread);
    }
}

/* Whether a generation other than SEEN (or shutdown) is published, spinning
 * a while before blocking on `work`. */
static void wait_for_work(attnd_pool *p, uint64_t seen)
{
    for (uint32_t i = 0; i < SPIN_ROUNDS; i++) {
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
            atomic_load_explicit(&p->shutdown, memory_order_acquire))
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (!atomic_load_explicit(&p->shutdown, memory_order_acquire) &&
           atomic_load_explicit(&p->generation, memory_order_acquire) == seen)
        pthread_cond_wait(&p->work, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    free(arg);
    attnd_pool *p = wa.pool;
    uint64_t seen = 0;
    for (;;) {
        wait_for_work(p, seen);
        if (atomic_load_explicit(&p->shutdown, memory_order_acquire))
            break;
        /* fn, ctx and n_tasks were written before the generation's release */
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_tasks(p, p->fn, p->ctx, p->n_tasks, wa.index);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

uint32_t attnd_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1u;
}

int attnd_pool_new(uint32_t n_threads, attnd_pool **out, attnd_err *err)
{
    *out = NULL;
    if (n_threads == 0)
        n_threads = attnd_cpu_count();
    if (n_threads > 1024)
        return attnd_err_set(err, ATTND_EINVAL, "threads: %u is more than 1024", n_threads);
    attnd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return attnd_err_set(err, ATTND_ENOMEM, "threads: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->shutdown, false);
    p->threads = calloc(n_threads, sizeof *p->threads);
    if (!p->threads) {
        attnd_pool_free(p);
        return attnd_err_set(err, ATTND_ENOMEM, "threads: out of memory");
    }
    for (uint32_t i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = p;
            wa->index = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i; /* join only the ones that started */
            attnd_pool_free(p);
            return attnd_err_set(err, ATTND_EIO, "threads: cannot start worker %u", i);
        }
    }
    *out = p;
    return ATTND_OK;
}

void attnd_pool_free(attnd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->shutdown, true, memory_order_release);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 1; p->threads && i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

uint32_t attnd_pool_size(const attnd_pool *p)
{
    return p->n_threads;
}

void attnd_pool_run(attnd_pool *p, attnd_pool_fn fn, void *ctx, uint32_t n_tasks)
{
    if (n_tasks == 0)
        return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (uint32_t t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    /* Every worker finished the previous run (busy reached 0), so none
     * reads these fields until the new generation is released. */
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, fn, ctx, n_tasks, 0);

    for (uint32_t i = 0; i < SPIN_ROUNDS; i++) {
        if (atomic_load_explicit(&p->busy, memory_order_acquire) == 0)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->busy, memory_order_acquire) > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
