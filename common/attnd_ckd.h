/* attnd_ckd.h - overflow-checked size arithmetic.
 *
 * Every size computed from outside input (file fields, HTTP bodies) goes through
 * these, so a hostile count can never wrap into a small allocation or a bounds
 * check that passes. Each returns true on success and false on overflow. */
#ifndef ATTND_CKD_H
#define ATTND_CKD_H

#include <stdbool.h>
#include <stdint.h>

static inline bool attnd_ckd_add(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}

static inline bool attnd_ckd_mul(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

/* Rounds x up to a multiple of align (a power of two). */
static inline bool attnd_ckd_align(uint64_t x, uint64_t align, uint64_t *r)
{
    uint64_t t;
    if (!attnd_ckd_add(x, align - 1, &t))
        return false;
    *r = t & ~(align - 1);
    return true;
}

#endif
