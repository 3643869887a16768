/* attn_naive.c - the reference attn_tiled is tested against (attn.h): the
 * textbook formula in double precision, scores of a whole row materialized,
 * no tiling and no online softmax, so it shares none of the kernel's tricks.
 * For tests only: it allocates per call and is slow. */
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

int attn_naive_f64(const attn_params *p, const attn_kv_view *kv, const float *q, uint32_t n_q,
                   uint32_t pos0, float *out, attnd_err *err)
{
    if (!p || !kv || !q || !out)
        return attnd_err_set(err, ATTND_EINVAL, "attn: NULL argument");
    if (!p->n_head || !p->n_head_kv || !p->head_dim || p->n_head % p->n_head_kv)
        return attnd_err_set(err, ATTND_EINVAL, "attn: bad head shape %u/%u x %u", p->n_head,
                             p->n_head_kv, p->head_dim);
    if (!n_q)
        return attnd_err_set(err, ATTND_EINVAL, "attn: n_q is 0");
    uint64_t kv_len = (uint64_t)pos0 + n_q;
    if (kv_len > UINT32_MAX || !kv->block_size || !kv->k_blocks || !kv->v_blocks ||
        (uint64_t)kv->n_blocks * kv->block_size < kv_len ||
        (kv->dtype != ATTN_DTYPE_F32 && kv->dtype != ATTN_DTYPE_F16))
        return attnd_err_set(err, ATTND_EINVAL, "attn: kv view cannot hold %llu positions",
                             (unsigned long long)kv_len);

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
            const float *qr = q + ((size_t)i * n_head + h) * hd;
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
