/* quant_preset.c - the presets as a table: each names its base type and, for
 * the few tensor roles the reference gives more bits, a rule saying which
 * layers get which type. quant_preset_tensor_type applies a preset's rules to
 * one tensor, then the row-length fallback.
 *
 * The per-tensor choices follow llama.cpp's llama-quantize for these presets
 * (no importance matrix, dense Llama/GPT-2-style models: no expert or
 * model-size special cases), so that a file we write has the mix a user
 * would download. */
#include "quant_preset.h"

#include <stdlib.h>
#include <string.h>

/* Tensors whose type some presets raise above the base type. */
typedef enum role {
    ROLE_ATTN_V,
    ROLE_ATTN_QKV,
    ROLE_ATTN_OUTPUT,
    ROLE_FFN_DOWN,
    ROLE_COUNT
} role;

/* How a role's rule picks between its types HI and LO for a layer. */
typedef enum rule_kind {
    RULE_BASE = 0,  /* no rule: the preset's base type */
    RULE_ALWAYS,    /* HI on every layer */
    RULE_MORE_BITS, /* HI on the first and last eighth and every third layer
                       between, LO elsewhere: the reference's spread of extra
                       bits over the depth */
    RULE_EARLY,     /* HI on layers below n_layer / DIV (DIV 0: below FIRST) */
    RULE_GQA4,      /* HI when 4 or more query heads share each KV head: attn_v
                       is then small next to attn_q, so extra bits are cheap */
} rule_kind;

/* In a rule, "the preset's base type". */
#define BASE GGUF_DTYPE_COUNT_

typedef struct rule {
    rule_kind kind;
    gguf_dtype hi, lo;
    uint32_t div, first;
} rule;

typedef struct preset {
    const char *name;
    uint32_t file_type; /* llama.cpp's LLAMA_FTYPE_MOSTLY_* (ALL_F32 = 0) */
    gguf_dtype base;
    rule rules[ROLE_COUNT];
} preset;

static const preset k_presets[QUANT_PRESET_COUNT] = {
    [QUANT_PRESET_F32] = {"F32", 0, GGUF_DTYPE_F32, {{0}}},
    [QUANT_PRESET_F16] = {"F16", 1, GGUF_DTYPE_F16, {{0}}},
    [QUANT_PRESET_BF16] = {"BF16", 32, GGUF_DTYPE_BF16, {{0}}},
    [QUANT_PRESET_Q4_0] = {"Q4_0", 2, GGUF_DTYPE_Q4_0, {{0}}},
    [QUANT_PRESET_Q4_1] = {"Q4_1", 3, GGUF_DTYPE_Q4_1, {{0}}},
    [QUANT_PRESET_Q5_0] = {"Q5_0", 8, GGUF_DTYPE_Q5_0, {{0}}},
    [QUANT_PRESET_Q5_1] = {"Q5_1", 9, GGUF_DTYPE_Q5_1, {{0}}},
    [QUANT_PRESET_Q8_0] = {"Q8_0", 7, GGUF_DTYPE_Q8_0, {{0}}},
    [QUANT_PRESET_Q2_K] = {"Q2_K", 10, GGUF_DTYPE_Q2_K,
                           {[ROLE_ATTN_V] = {RULE_GQA4, GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q3_K, 0, 0},
                            [ROLE_ATTN_OUTPUT] = {RULE_ALWAYS, GGUF_DTYPE_Q3_K, BASE, 0, 0},
                            [ROLE_FFN_DOWN] = {RULE_ALWAYS, GGUF_DTYPE_Q3_K, BASE, 0, 0}}},
    [QUANT_PRESET_Q3_K_M] = {"Q3_K_M", 12, GGUF_DTYPE_Q3_K,
                             {[ROLE_ATTN_V] = {RULE_EARLY, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q4_K, 0, 2},
                              [ROLE_ATTN_QKV] = {RULE_ALWAYS, GGUF_DTYPE_Q4_K, BASE, 0, 0},
                              [ROLE_ATTN_OUTPUT] = {RULE_ALWAYS, GGUF_DTYPE_Q4_K, BASE, 0, 0},
                              [ROLE_FFN_DOWN] = {RULE_EARLY, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q4_K, 16, 0}}},
    [QUANT_PRESET_Q4_K_M] = {"Q4_K_M", 15, GGUF_DTYPE_Q4_K,
                             {[ROLE_ATTN_V] = {RULE_MORE_BITS, GGUF_DTYPE_Q6_K, BASE, 0, 0},
                              [ROLE_ATTN_QKV] = {RULE_ALWAYS, GGUF_DTYPE_Q5_K, BASE, 0, 0},
                              [ROLE_FFN_DOWN] = {RULE_MORE_BITS, GGUF_DTYPE_Q6_K, BASE, 0, 0}}},
    [QUANT_PRESET_Q5_K_M] = {"Q5_K_M", 17, GGUF_DTYPE_Q5_K,
                             {[ROLE_ATTN_V] = {RULE_MORE_BITS, GGUF_DTYPE_Q6_K, BASE, 0, 0},
                              [ROLE_ATTN_QKV] = {RULE_ALWAYS, GGUF_DTYPE_Q6_K, BASE, 0, 0},
                              [ROLE_FFN_DOWN] = {RULE_MORE_BITS, GGUF_DTYPE_Q6_K, BASE, 0, 0}}},
    [QUANT_PRESET_Q6_K] = {"Q6_K", 18, GGUF_DTYPE_Q6_K, {{0}}},
    [QUANT_PRESET_IQ4_NL] = {"IQ4_NL", 25, GGUF_DTYPE_IQ4_NL,
                             {[ROLE_ATTN_V] = {RULE_GQA4, GGUF_DTYPE_Q5_K, BASE, 0, 0},
                              [ROLE_FFN_DOWN] = {RULE_EARLY, GGUF_DTYPE_Q5_K, BASE, 8, 0}}},
    [QUANT_PRESET_IQ4_XS] = {"IQ4_XS", 30, GGUF_DTYPE_IQ4_XS,
                             {[ROLE_ATTN_V] = {RULE_GQA4, GGUF_DTYPE_Q5_K, BASE, 0, 0},
                              [ROLE_FFN_DOWN] = {RULE_EARLY, GGUF_DTYPE_Q5_K, BASE, 8, 0}}},
};

/* Which role a tensor name has: the reference matches these as substrings. */
static const struct {
    const char *part;
    role r;
} k_roles[] = {
    {"attn_v.weight", ROLE_ATTN_V},
    {"ffn_down", ROLE_FFN_DOWN},
    {"attn_output.weight", ROLE_ATTN_OUTPUT},
    {"attn_qkv.weight", ROLE_ATTN_QKV},
};

/* Matrices no preset touches: small or position-like tables whose precision
 * matters more than their size. */
static const char *const k_kept[] = {
    "_norm.weight",         "ffn_gate_inp.weight", "position_embd.weight",
    "token_types.weight",   "ssm_conv1d.weight",   "time_mix_first.weight",
    "time_mix_w1.weight",   "time_mix_w2.weight",  "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
};

/* When rows are not whole blocks of a 256-element type, the 32-element type
 * with the nearest bits. Q8_0 -> F16 only serves the output projection of a
 * 256-block preset (the reference refuses such a model; F16 loads anywhere). */
static const struct {
    gguf_dtype from, to;
} k_row_fallback[] = {
    {GGUF_DTYPE_Q2_K, GGUF_DTYPE_IQ4_NL}, {GGUF_DTYPE_Q3_K, GGUF_DTYPE_IQ4_NL},
    {GGUF_DTYPE_IQ4_XS, GGUF_DTYPE_IQ4_NL}, {GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q5_0},
    {GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q5_1},   {GGUF_DTYPE_Q6_K, GGUF_DTYPE_Q8_0},
    {GGUF_DTYPE_Q8_0, GGUF_DTYPE_F16},
};

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool name_eq_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (ascii_lower((unsigned char)*a) != ascii_lower((unsigned char)*b))
            return false;
    return *a == *b;
}

bool quant_preset_parse(const char *name, quant_preset *out)
{
    for (int p = 0; p < QUANT_PRESET_COUNT; p++)
        if (name_eq_nocase(name, k_presets[p].name)) {
            *out = (quant_preset)p;
            return true;
        }
    return false;
}

const char *quant_preset_name(quant_preset p)
{
    return (unsigned)p < QUANT_PRESET_COUNT ? k_presets[p].name : "?";
}

uint32_t quant_preset_file_type(quant_preset p)
{
    return k_presets[p].file_type;
}

gguf_dtype quant_preset_base_type(quant_preset p)
{
    return k_presets[p].base;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* Weight matrices: what any preset may convert. */
static bool is_convertible(const char *name, uint32_t n_dims)
{
    if (n_dims < 2 || !ends_with(name, "weight"))
        return false;
    for (size_t i = 0; i < sizeof k_kept / sizeof k_kept[0]; i++)
        if (strstr(name, k_kept[i]))
            return false;
    return true;
}

/* The block index in "blk.N.<...>"; 0 for tensors outside the blocks. */
static uint32_t layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return 0;
    char *end;
    unsigned long l = strtoul(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && l <= UINT32_MAX ? (uint32_t)l : 0;
}

static bool more_bits_layer(uint32_t l, uint32_t n)
{
    return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

static gguf_dtype apply_rule(const rule *r, gguf_dtype base, uint32_t layer,
                             const quant_preset_model *m)
{
    bool hi;
    switch (r->kind) {
    case RULE_ALWAYS: hi = true; break;
    case RULE_MORE_BITS: hi = more_bits_layer(layer, m->n_layer); break;
    case RULE_EARLY: hi = layer < (r->div ? m->n_layer / r->div : r->first); break;
    case RULE_GQA4: hi = m->n_gqa >= 4; break;
    default: return base;
    }
    gguf_dtype t = hi ? r->hi : r->lo;
    return t == BASE ? base : t;
}

/* The output projection decides every logit: 6-bit K-quant unless the base
 * type is already 8-bit or its rows do not fit the base type's blocks. */
static gguf_dtype output_type(gguf_dtype base, uint64_t ne0)
{
    if (ne0 % gguf_dtype_block_elems(base) != 0)
        return GGUF_DTYPE_Q8_0;
    return base == GGUF_DTYPE_Q8_0 ? base : GGUF_DTYPE_Q6_K;
}

/* T, or its fallback when NE0 is not whole blocks of T: a 32-element type,
 * then F16. False when T has none. */
static bool fit_rows(gguf_dtype t, uint64_t ne0, gguf_dtype *out)
{
    if (ne0 % gguf_dtype_block_elems(t) == 0) {
        *out = t;
        return true;
    }
    for (size_t i = 0; i < sizeof k_row_fallback / sizeof k_row_fallback[0]; i++)
        if (k_row_fallback[i].from == t) {
            gguf_dtype f = k_row_fallback[i].to;
            *out = ne0 % gguf_dtype_block_elems(f) == 0 ? f : GGUF_DTYPE_F16;
            return true;
        }
    return false;
}

bool quant_preset_tensor_type(quant_preset p, const quant_preset_model *m, const char *name,
                              uint32_t n_dims, uint64_t ne0, gguf_dtype cur, gguf_dtype *out)
{
    const preset *ps = &k_presets[p];
    if (!is_convertible(name, n_dims)) {
        *out = cur;
        return true;
    }
    /* Float presets convert every matrix alike. */
    if (gguf_dtype_block_elems(ps->base) == 1) {
        *out = ps->base;
        return true;
    }
    /* A preset of 32-element blocks (Q4_0 ... Q8_0, IQ4_NL) is that type or
     * nothing, as in the reference. */
    if (gguf_dtype_block_elems(ps->base) == 32 && ne0 % 32 != 0)
        return false;
    gguf_dtype t = ps->base;
    if (strcmp(name, "output.weight") == 0 ||
        (!m->has_output && strcmp(name, "token_embd.weight") == 0)) {
        t = output_type(ps->base, ne0);
    } else {
        for (size_t i = 0; i < sizeof k_roles / sizeof k_roles[0]; i++)
            if (strstr(name, k_roles[i].part)) {
                t = apply_rule(&ps->rules[k_roles[i].r], ps->base, layer_of(name), m);
                break;
            }
    }
    return fit_rows(t, ne0, out);
}
