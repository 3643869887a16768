/* attn_naive.c - the textbook formula in double precision (attn.h), scores of
 * a whole row materialized, no tiling and no online softmax, so it shares none
 * of the kernel's tricks: the reference attn_tiled is tested against
 * (attn_naive_f64), and the exact probabilities /v1/attention exports
 * (attn_probs). It allocates per call and is slow: O(positions) per row. */
#include "attn.h"

#include <math.h>
#include <stdlib.h>

#include "attnd_half.h"

/* The K (or V) row of KV head G at position POS, as stored, into ROW. */
static void kv_row(const attn_kv_view *kv, const void *const *blocks, uint32_t head_dim,
                   uint32_t g, uint32_t pos, double *row)
{
    const uint32_t bs = kv->block_size;
    const size_t at = ((size_t)g * bs + pos % bs) * head_dim;
    const void *blk = blocks[pos / bs];
    for (uint32_t d = 0; d < head_dim; d++)
        row[d] = kv->dtype == ATTN_DTYPE_F16 ? attnd_f16_to_f32(((const uint16_t *)blk)[at + d])
                                             : ((const float *)blk)[at + d];
}

/* exp(score - max) of the query row QR against KV head G's keys at [LO, POS]
 * into SCORE[LO..POS]; returns their sum. ROW: head_dim scratch. */
static double softmax_row(const attn_params *p, const attn_kv_view *kv, const float *qr, uint32_t g,
                          uint32_t lo, uint32_t pos, double *score, double *row)
{
    const uint32_t hd = p->head_dim;
    double mx = -INFINITY;
    for (uint32_t j = lo; j <= pos; j++) {
        kv_row(kv, kv->k_blocks, hd, g, j, row);
        double dot = 0.0;
        for (uint32_t d = 0; d < hd; d++)
            dot += (double)qr[d] * row[d];
        score[j] = dot * (double)p->scale;
        if (score[j] > mx)
            mx = score[j];
    }
    double sum = 0.0;
    for (uint32_t j = lo; j <= pos; j++) {
        score[j] = exp(score[j] - mx);
        sum += score[j];
    }
    return sum;
}

/* The checks both entry points make; KV_LEN gets pos0 + n_q. */
static int check_args(const attn_params *p, const attn_kv_view *kv, const void *q, uint32_t n_q,
                      uint32_t pos0, const void *out, uint64_t *kv_len, attnd_err *err)
{
    if (!p || !kv || !q || !out)
        return attnd_err_set(err, ATTND_EINVAL, "attn: NULL argument");
    if (!p->n_head || !p->n_head_kv || !p->head_dim || p->n_head % p->n_head_kv)
        return attnd_err_set(err, ATTND_EINVAL, "attn: bad head shape %u/%u x %u", p->n_head,
                             p->n_head_kv, p->head_dim);
    if (!n_q)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_q is 0");
    *kv_len = (uint64_t)pos0 + n_q;
    if (*kv_len > UINT32_MAX || !kv->block_size || !kv->k_blocks || !kv->v_blocks ||
        (uint64_t)kv->n_blocks * kv->block_size < *kv_len ||
        (kv->dtype != ATTN_DTYPE_F32 && kv->dtype != ATTN_DTYPE_F16))
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv view cannot hold %llu positions",
                             (unsigned long long)*kv_len);
    return ATTND_OK;
}

int attn_probs(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
               uint32_t pos0, const uint32_t *heads, uint32_t n_heads, float *out, size_t ld,
               attnd_err *err)
{
    uint64_t kv_len;
    int rc = check_args(p, kv, q, n_q, pos0, out, &kv_len, err);
    if (rc != ATTND_OK)
        return rc;
    if (ld < kv_len)
        return attnd_err_set(err, ATTND_EINVAL, "attn: row stride %zu < %llu positions", ld,
                             (unsigned long long)kv_len);
    for (uint32_t k = 0; k < n_heads; k++)
        if (!heads || heads[k] >= p->n_head)
            return attnd_err_set(err, ATTND_EINVAL, "attn: head %u of %u", heads ? heads[k] : 0,
                                 p->n_head);
    const uint32_t hd = p->head_dim, group = p->n_head / p->n_head_kv;
    double *score = malloc((size_t)kv_len * sizeof *score);
    double *row = malloc((size_t)hd * sizeof *row);
    if (!score || !row) {
        free(score);
        free(row);
        return attnd_err_set(err, ATTND_ENOMEM, "attn: out of memory for %llu scores",
                             (unsigned long long)kv_len);
    }
    for (uint32_t k = 0; k < n_heads; k++) {
        const uint32_t h = heads[k];
        for (uint32_t i = 0; i < n_q; i++) {
            const uint32_t pos = pos0 + i;
            const uint32_t lo = p->window && pos >= p->window ? pos - p->window + 1 : 0;
            double sum = softmax_row(p, kv, q + ((size_t)i * p->n_head + h) * hd, h / group, lo,
                                     pos, score, row);
            float *o = out + ((size_t)k * n_q + i) * ld;
            for (size_t j = 0; j < ld; j++)
                o[j] = j >= lo && j <= pos ? (float)(score[j] / sum) : 0.0f;
        }
    }
    free(score);
    free(row);
    return ATTND_OK;
}

int attn_naive_f64(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
                   uint32_t pos0, float *out, attnd_err *err)
{
    uint64_t kv_len;
    int rc = check_args(p, kv, q, n_q, pos0, out, &kv_len, err);
    if (rc != ATTND_OK)
        return rc;
    const uint32_t hd = p->head_dim, n_head = p->n_head, group = n_head / p->n_head_kv;
    double *score = malloc((size_t)kv_len * sizeof *score);
    double *o = malloc((size_t)hd * sizeof *o);
    double *row = malloc((size_t)hd * sizeof *row);
    if (!score || !o || !row) {
        free(score);
        free(o);
        free(row);
        return attnd_err_set(err, ATTND_ENOMEM, "attn: out of memory for %llu scores",
                             (unsigned long long)kv_len);
    }
    for (uint32_t i = 0; i < n_q; i++) {
        const uint32_t pos = pos0 + i;
        const uint32_t lo = p->window && pos >= p->window ? pos - p->window + 1 : 0;
        for (uint32_t h = 0; h < n_head; h++) {
            const uint32_t g = h / group;
            double sum = softmax_row(p, kv, q + ((size_t)i * n_head + h) * hd, g, lo, pos, score, row);
            for (uint32_t d = 0; d < hd; d++)
                o[d] = 0.0;
            for (uint32_t j = lo; j <= pos; j++) {
                kv_row(kv, kv->v_blocks, hd, g, j, row);
                for (uint32_t d = 0; d < hd; d++)
                    o[d] += score[j] * row[d];
            }
            float *orow = out + ((size_t)i * n_head + h) * hd;
            for (uint32_t d = 0; d < hd; d++)
                orow[d] = (float)(o[d] / sum);
        }
    }
    free(score);
    free(o);
    free(row);
    return ATTND_OK;
}
