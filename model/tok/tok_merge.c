/* tok_merge.c - the merge engine both BPE flavours share: a priority queue of
 * adjacent symbol pairs, merged best-first until no allowed pair is left
 * (tok_internal.h). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "attnd_ckd.h"

/* ============================================================ merge engine */

/* A candidate merge of syms[left] and syms[right] as they were when it was
 * queued; SIZE tells later whether either side has changed since. */
struct tok_bigram {
    double prio;
    size_t left, right, size;
};

static bool bigram_before(const tok_bigram *a, const tok_bigram *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(tok_merger *m, const tok_bigram *b, attnd_err *err)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        uint64_t bytes;
        if (cap < m->cap || !attnd_ckd_mul(cap, sizeof *m->heap, &bytes) || bytes > SIZE_MAX)
            return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: merge queue too large");
        tok_bigram *nh = realloc(m->heap, (size_t)bytes);
        if (!nh)
            return attnd_err_set(err, ATTND_ENOMEM, "tokenizer: out of memory for the merge queue");
        m->heap = nh;
        m->cap = cap;
    }
    size_t i = m->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(b, &m->heap[parent]))
            break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = *b;
    return ATTND_OK;
}

static tok_bigram heap_pop(tok_merger *m)
{
    tok_bigram top = m->heap[0];
    tok_bigram last = m->heap[--m->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->n)
            break;
        if (c + 1 < m->n && bigram_before(&m->heap[c + 1], &m->heap[c]))
            c++;
        if (!bigram_before(&m->heap[c], &last))
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->n > 0)
        m->heap[i] = last;
    return top;
}

static int try_add(const tok_vocab *v, tok_pair_fn pair, const tok_sym *syms, size_t left,
                   size_t right, tok_merger *m, attnd_err *err)
{
    if (left == TOK_NONE || right == TOK_NONE)
        return ATTND_OK;
    double prio;
    if (!pair(v, syms[left].text, syms[left].n, syms[right].text, syms[right].n, &prio))
        return ATTND_OK;
    tok_bigram b = {prio, left, right, syms[left].n + syms[right].n};
    return heap_push(m, &b, err);
}

int tok_merge(const tok_vocab *v, tok_pair_fn pair, tok_sym *syms, size_t n, tok_merger *m,
              attnd_err *err)
{
    int rc;
    m->n = 0;
    for (size_t i = 1; i < n; i++)
        if ((rc = try_add(v, pair, syms, i - 1, i, m, err)) != ATTND_OK)
            return rc;
    while (m->n > 0) {
        tok_bigram b = heap_pop(m);
        tok_sym *l = &syms[b.left], *r = &syms[b.right];
        /* Sizes only grow (or drop to 0 when merged away), so an unchanged
         * total means neither side took part in another merge meanwhile. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next != TOK_NONE)
            syms[r->next].prev = b.left;
        if ((rc = try_add(v, pair, syms, l->prev, b.left, m, err)) != ATTND_OK ||
            (rc = try_add(v, pair, syms, b.left, l->next, m, err)) != ATTND_OK)
            return rc;
    }
    return ATTND_OK;
}

void tok_merger_free(tok_merger *m)
{
    free(m->heap);
    m->heap = NULL;
    m->n = m->cap = 0;
}

