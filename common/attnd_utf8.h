/* attnd_utf8.h - strict UTF-8 decoding and encoding (RFC 3629).
 *
 * Shared by the tokenizers (byte tokens can split characters) and the server
 * (text sent to clients must be valid UTF-8). "Valid" excludes overlong forms,
 * UTF-16 surrogates (U+D800..U+DFFF) and code points above U+10FFFF. */
#ifndef ATTND_UTF8_H
#define ATTND_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTND_UTF8_REPLACEMENT 0xFFFDu /* U+FFFD, EF BF BD in UTF-8 */
#define ATTND_UTF8_MAX 4               /* longest encoded character */

/* Decodes the character at the start of the LEN bytes at S.
 * Returns:
 *   n > 0  a valid character of n bytes; *CP (if non-NULL) gets its code point;
 *   0      LEN is 0, or all LEN bytes are a valid but unfinished beginning of a
 *          character (more bytes could complete it);
 *   -n < 0 the first n bytes (1..3) are invalid: the "maximal subpart" of
 *          Unicode's U+FFFD substitution practice, to be replaced by one U+FFFD
 *          and skipped. A byte that can never start a character gives -1. */
int attnd_utf8_decode(const void *s, size_t len, uint32_t *cp);

/* Length of the longest prefix of S that is whole, valid characters. */
size_t attnd_utf8_valid_prefix(const void *s, size_t len);

/* True if all LEN bytes at S are valid UTF-8 (whole characters). */
bool attnd_utf8_valid(const void *s, size_t len);

/* Writes the UTF-8 form of CP to OUT (at least ATTND_UTF8_MAX bytes) and returns
 * its length, or 0 if CP is a surrogate or above U+10FFFF. */
size_t attnd_utf8_encode(uint32_t cp, char *out);

#endif
