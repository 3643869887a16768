/* attnd_utf8.c - strict UTF-8 helpers (see attnd_utf8.h). */
#include "attnd_utf8.h"

int attnd_utf8_decode(const void *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = s;
    if (len == 0)
        return 0;
    unsigned c = p[0];
    if (c < 0x80) {
        if (cp)
            *cp = c;
        return 1;
    }
    /* The allowed range of the second byte depends on the lead byte: that is
     * what excludes overlong forms (E0, F0), surrogates (ED) and code points
     * past U+10FFFF (F4) without decoding first. */
    int need;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0xC2) {
        return -1; /* continuation byte, or overlong 2-byte lead C0/C1 */
    } else if (c < 0xE0) {
        need = 2;
        v = c & 0x1Fu;
    } else if (c < 0xF0) {
        need = 3;
        v = c & 0x0Fu;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c < 0xF5) {
        need = 4;
        v = c & 0x07u;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= len)
            return 0;
        unsigned b = p[i];
        if (b < lo || b > hi)
            return -i;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (b & 0x3Fu);
    }
    if (cp)
        *cp = v;
    return need;
}

size_t attnd_utf8_valid_prefix(const void *s, size_t len)
{
    const unsigned char *p = s;
    size_t off = 0;
    while (off < len) {
        int n = attnd_utf8_decode(p + off, len - off, NULL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    return off;
}

bool attnd_utf8_valid(const void *s, size_t len)
{
    return attnd_utf8_valid_prefix(s, len) == len;
}

size_t attnd_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}
