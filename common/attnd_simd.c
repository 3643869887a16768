/* attnd_simd.c - CPU feature checks for the vector kernels (attnd_simd.h). */
#include "attnd_simd.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

bool attnd_cpu_avx2(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    __builtin_cpu_init();
    /* F16C is not a __builtin_cpu_supports name in every compiler: ask CPUID. */
    bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
    return false;
#endif
}

bool attnd_cpu_avx512_vnni(void)
{
#if defined(__x86_64__)
    if (!attnd_cpu_avx2())
        return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}
