/* attnd_simd.h - the one place that says which x86 vector path this CPU can
 * run, and the small helpers the AVX2 kernels of every module share.
 *
 * The binary is built for baseline x86-64; kernels marked ATTND_AVX2 are
 * compiled for AVX2 + FMA + F16C and called only when attnd_cpu_avx2() says
 * the CPU has all three; ATTND_AVX512 kernels only when
 * attnd_cpu_avx512_vnni() says so. */
#ifndef ATTND_SIMD_H
#define ATTND_SIMD_H

#include <stdbool.h>

/* AVX2, FMA and F16C all present (false off x86). Asks CPUID, which traps to
 * the hypervisor in a VM: call it when setting up (an engine, a scratch), not
 * per row. */
bool attnd_cpu_avx2(void);
/* attnd_cpu_avx2() and AVX-512 F, BW, DQ, VL with VNNI (vpdpbusd): the set
 * the ATTND_AVX512 kernels are compiled for. */
bool attnd_cpu_avx512_vnni(void);

#if defined(__x86_64__)
#include <immintrin.h>
#define ATTND_HAVE_X86 1
#define ATTND_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ATTND_AVX512                                                                               \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

ATTND_AVX2 static inline float attnd_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#endif
