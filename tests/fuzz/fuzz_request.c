/* fuzz_request.c - libFuzzer target for the HTTP API's request parsing and
 * stop-string matcher (server/srv_api.h): the input is parsed as a /generate,
 * /tokenize and /detokenize body, and separately read as stop strings plus a
 * text cut into feeds, whose output is checked against a whole-text
 * reference; and as /v1/chat/completions, /v1/completions and /v1/attention
 * bodies. Build
 * with clang and -DATTND_FUZZ=ON. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attnd_utf8.h"
#include "srv_api.h"
#include "srv_attention.h"
#include "srv_openai.h"
#include "srv_stop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static void parse_bodies(const char *body, size_t len)
{
    srv_limits lim = {.default_max_tokens = 64, .max_tokens_cap = 4096};
    srv_gen_req r;
    attnd_err err = {0};
    if (srv_parse_generate(body, len, &lim, 7, &r, &err) == ATTND_OK) {
        CHECK(r.prompt && strlen(r.prompt) == r.prompt_len);
        CHECK(attnd_utf8_valid(r.prompt, r.prompt_len));
        CHECK(r.max_tokens >= 1 && r.max_tokens <= lim.max_tokens_cap);
        CHECK(r.n_stop <= SRV_MAX_STOP);
        for (size_t i = 0; i < r.n_stop; i++)
            CHECK(r.stop_len[i] >= 1 && r.stop_len[i] <= SRV_MAX_STOP_LEN &&
                  strlen(r.stop[i]) == r.stop_len[i]);
        CHECK(r.sample.temperature >= 0 && r.sample.top_p > 0 && r.sample.top_p <= 1);
        CHECK(r.sample.min_p >= 0 && r.sample.min_p <= 1 && r.sample.repeat_penalty > 0);
        CHECK(r.seed_given || r.sample.seed == 7);
        /* The parsed stops on the prompt, in one go. */
        srv_stop *s = srv_stop_new(r.stop, r.stop_len, r.n_stop);
        if (s) {
            const char *e;
            size_t el;
            bool st;
            srv_stop_feed(s, r.prompt, r.prompt_len, &e, &el, &st);
            CHECK(el <= r.prompt_len && memcmp(e, r.prompt, el) == 0);
            srv_stop_free(s);
        }
        srv_gen_req_free(&r);
    } else {
        CHECK(err.msg[0] != '\0');
    }

    char *text;
    size_t text_len;
    unsigned flags;
    if (srv_parse_tokenize(body, len, &text, &text_len, &flags, &err) == ATTND_OK) {
        CHECK(text && strlen(text) == text_len && attnd_utf8_valid(text, text_len));
        free(text);
    }

    int32_t *ids;
    size_t n;
    if (srv_parse_detokenize(body, len, 1000, &ids, &n, &err) == ATTND_OK) {
        CHECK(ids);
        for (size_t i = 0; i < n; i++)
            CHECK(ids[i] >= 0 && ids[i] < 1000);
        free(ids);
    }

    /* the OpenAI routes, with a small template so that messages render */
    static jinja_tmpl *tmpl;
    if (!tmpl) {
        static const char src[] = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}"
                                  "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
        attnd_err terr = {0};
        CHECK(jinja_parse(src, sizeof src - 1, &tmpl, &terr) == ATTND_OK);
    }
    srv_chat_template ct = {tmpl, "no template", "<s>", "</s>"};
    bool usage;
    if (srv_parse_chat(body, len, &lim, 7, &ct, &r, &usage, &err) == ATTND_OK) {
        CHECK(r.prompt && strlen(r.prompt) == r.prompt_len && r.parse_special && !r.add_special);
        CHECK(r.top_logprobs <= SRV_MAX_TOP_LOGPROBS && r.n_bias <= SAMPLE_MAX_BIAS);
        srv_gen_req_free(&r);
    } else {
        CHECK(err.msg[0] != '\0');
    }
    if (srv_parse_completion(body, len, &lim, 7, &r, &usage, &err) == ATTND_OK) {
        CHECK(r.prompt && (r.n_prompt_ids > 0 || attnd_utf8_valid(r.prompt, r.prompt_len)));
        srv_gen_req_free(&r);
    } else {
        CHECK(err.msg[0] != '\0');
    }

    /* /v1/attention against a 4-layer, 8-head model */
    model_hparams hp = {.n_layer = 4, .n_head = 8};
    srv_attn_opts a;
    if (srv_parse_attention(body, len, &lim, 7, &hp, &r, &a, &err) == ATTND_OK) {
        CHECK(a.n_layers >= 1 && a.n_layers <= 4 && a.n_heads >= 1 && a.n_heads <= 8);
        for (uint32_t i = 0; i < a.n_layers; i++)
            CHECK(a.layers[i] < 4);
        for (uint32_t i = 0; i < a.n_heads; i++)
            CHECK(a.heads[i] < 8);
        CHECK(a.top_k >= 1 && a.top_k <= SRV_ATTN_TOP_K_MAX && r.max_tokens == a.n_tokens + 1);
        uint64_t cells;
        (void)srv_attention_cells(&a, UINT32_MAX, 1u << 22, &cells, &err);
        srv_gen_req_free(&r);
    } else {
        CHECK(err.msg[0] != '\0');
    }

    char *j = srv_error_json("invalid_request", err.msg);
    CHECK(j && attnd_utf8_valid(j, strlen(j)));
    free(j);
}

/* Input layout: a count byte, then that many (length byte, bytes) stop
 * strings, then (length byte, bytes) feeds until the end. */
static void match_stops(const uint8_t *d, size_t size)
{
    if (size == 0)
        return;
    size_t pos = 1, n = d[0] % 5;
    char *stops[4];
    size_t sl[4], got = 0, max_sl = 0;
    for (size_t k = 0; k < n && pos < size; k++) {
        size_t l = d[pos++] % 9;
        if (l > size - pos)
            l = size - pos;
        stops[got] = (char *)(d + pos);
        sl[got] = l;
        if (l > max_sl)
            max_sl = l;
        got++;
        pos += l;
    }
    const char *text = (const char *)d + pos;
    size_t tlen = size - pos;

    /* Reference: the stop complete first (the longest of those complete at
     * the same byte); empty stop strings are ignored. */
    size_t want = tlen;
    bool want_stop = false;
    for (size_t end = 1; end <= tlen && !want_stop; end++)
        for (size_t k = 0; k < got; k++)
            if (sl[k] && sl[k] <= end && memcmp(text + end - sl[k], stops[k], sl[k]) == 0 &&
                end - sl[k] < want) {
                want = end - sl[k];
                want_stop = true;
            }

    srv_stop *s = srv_stop_new(stops, sl, got);
    if (!s)
        return;
    char *out = malloc(tlen + 1);
    CHECK(out);
    size_t out_len = 0, fed = 0;
    bool stopped = false;
    /* Feed lengths come from the text itself: chunks up to 7 bytes. */
    while (fed < tlen) {
        size_t l = 1 + (unsigned char)text[fed] % 7;
        if (l > tlen - fed)
            l = tlen - fed;
        const char *e;
        size_t el;
        bool now;
        CHECK(srv_stop_feed(s, text + fed, l, &e, &el, &now) == ATTND_OK);
        fed += l;
        CHECK(!stopped || el == 0);
        memcpy(out + out_len, e, el);
        out_len += el;
        stopped = now;
        /* Held back: a proper prefix of a stop, plus at most an unfinished
         * character before it. */
        if (!stopped)
            CHECK(fed - out_len <= (max_sl ? max_sl - 1 : 0) + ATTND_UTF8_MAX - 1);
    }
    if (!stopped) {
        const char *e;
        size_t el;
        srv_stop_flush(s, &e, &el);
        memcpy(out + out_len, e, el);
        out_len += el;
    }
    srv_stop_free(s);
    CHECK(stopped == want_stop);
    CHECK(memcmp(out, text, out_len) == 0);
    if (stopped) /* a character cut by the stop is dropped whole */
        CHECK(out_len <= want && want - out_len < ATTND_UTF8_MAX);
    else
        CHECK(out_len == tlen);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_bodies((const char *)data, size);
    match_stops(data, size);
    return 0;
}
