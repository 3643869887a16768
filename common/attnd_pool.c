/* attnd_pool.c - worker threads for parallel loops (attnd_pool.h).
 *
 * A run is published under the mutex with a new generation number; workers
 * wake, claim task indices with an atomic counter, and the last one to finish
 * signals the caller. The caller also claims tasks, so a pool of size 1 has no
 * worker threads at all. */
#include "attnd_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct attnd_pool {
    uint32_t n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a new generation was published, or shutdown */
    pthread_cond_t done; /* the running generation finished */
    uint64_t generation;
    bool shutdown;
    /* the current run */
    attnd_pool_fn fn;
    void *ctx;
    uint32_t n_tasks;
    atomic_uint next;
    uint32_t busy; /* workers still inside the current run (under mu) */
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

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    free(arg);
    attnd_pool *p = wa.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->shutdown)
            break;
        seen = p->generation;
        attnd_pool_fn fn = p->fn;
        void *ctx = p->ctx;
        uint32_t n = p->n_tasks;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, fn, ctx, n, wa.index);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->shutdown = true;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->busy = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p, fn, ctx, n_tasks, 0);

    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
