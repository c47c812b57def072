// Which SIMD kernels run: the CPU's features, detected once at run time, and the kernel set the
// build compiled in. The AVX2 kernels are compiled with the build's flags (-march=native by
// default); the AVX-512 kernels (files *_avx512.cpp) are compiled for AVX-512 F/BW/VL/DQ + VNNI
// + BF16 in any x86-64 build with a capable compiler and are used only when the CPU reports all of
// those features, so one binary runs on Zen 3 (AVX2) and Zen 4/5 or Sapphire Rapids (AVX-512).
//
// The environment variable AKVQ_ISA caps the choice for the whole process: `avx2` keeps the AVX2
// kernels on an AVX-512 CPU (side-by-side benchmarks); `scalar` uses the scalar reference. It is
// read once, on first use. Tests switch with set_isa_cap().
#pragma once

namespace akvq::cpu {

enum class Isa { Scalar = 0, Neon = 1, Avx2 = 2, Avx512 = 3 };

struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA + F16C
  bool avx512 = false;       // AVX-512 F, BW, VL, DQ
  bool avx512_vnni = false;  // vpdpwssd / vpdpbusd
  bool avx512_bf16 = false;  // vdpbf16ps
};

// Features of the CPU this process runs on (cpuid; all false on non-x86).
const CpuFeatures& cpu_features();

// True when this build compiled the AVX-512 kernels (x86-64 and a compiler that accepts them).
bool avx512_compiled();

// The best kernel set for this CPU and build, capped by AKVQ_ISA / set_isa_cap().
Isa active_isa();

// Caps active_isa() at `cap` (Isa::Avx512: no cap). For tests and benchmarks; not thread-safe with
// running matmuls.
void set_isa_cap(Isa cap);

const char* isa_name(Isa isa);

}  // namespace akvq::cpu
