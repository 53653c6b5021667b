/*
 * Lets MKL pick its kernels by CPU features on AMD CPUs, as it does on Intel ones.
 *
 * libtorch_cpu.so links MKL statically and exports MKL's internal vendor check. On an AMD CPU the
 * check says "not Intel" and MKL runs its generic AVX2 kernels even where the CPU has AVX-512
 * (Zen 4 and later). The check is called through the PLT, so this definition, preloaded by
 * scripts/env.sh (mkl_on_amd), wins; MKL then reads CPUID feature bits and picks the AVX-512
 * kernels the CPU really has. Measured with scripts/bench on 2 Zen 4 cores: fp32 GEMM 160-170 ->
 * 340-380 GFLOP/s (README, "Launch settings"). Results stay within float rounding of the default
 * path: the whole test suite passes with it preloaded.
 */
int mkl_serv_intel_cpu_true(void) { return 1; }
