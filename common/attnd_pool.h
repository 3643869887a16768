/* attnd_pool.h - a fixed pool of worker threads that runs one parallel loop
 * at a time: attnd_pool_run(fn, n_tasks) calls fn for every task index, spread
 * over the workers and the calling thread, and returns when all are done.
 *
 * The engine owns one pool and runs every parallel part of a step through it
 * (matmuls split by output rows, attention split by sequence and KV head), so
 * the number of busy threads never exceeds the pool size. One caller at a
 * time: a pool is not for concurrent attnd_pool_run calls. */
#ifndef ATTND_POOL_H
#define ATTND_POOL_H

#include <stdint.h>

#include "attnd_err.h"

typedef struct attnd_pool attnd_pool;

/* TASK is the task index; THREAD identifies the running thread in
 * [0, attnd_pool_size), e.g. to pick per-thread scratch. */
typedef void (*attnd_pool_fn)(void *ctx, uint32_t task, uint32_t thread);

/* N_THREADS counts the caller; 0 means the number of online CPUs. */
int attnd_pool_new(uint32_t n_threads, attnd_pool **out, attnd_err *err);
void attnd_pool_free(attnd_pool *pool);
uint32_t attnd_pool_size(const attnd_pool *pool);
void attnd_pool_run(attnd_pool *pool, attnd_pool_fn fn, void *ctx, uint32_t n_tasks);

/* The number of online CPUs (at least 1). */
uint32_t attnd_cpu_count(void);

#endif
