// Machine facts for the benchmarks (bench/speed.py, bench/compare_llamacpp.py): the memory
// read-bandwidth probe and the CPU features / kernel set in use.
#include <akvq/error.h>

#include <string>

#include "api/limits.h"
#include "common.h"
#include "cpu/bandwidth.h"
#include "cpu/isa.h"
#include "cpu/thread_pool.h"

namespace akvq::bind {

void init_bandwidth(nb::module_& m) {
  m.def(
      "read_bandwidth_gbs",
      [](int threads, int64_t mib, int reps) {
        limits::check_range("bandwidth", "threads", threads, 1, limits::kMaxThreads);
        if (mib < 1) throw InvalidArgument("[bandwidth] mib must be >= 1, got " + std::to_string(mib));
        if (reps < 1) throw InvalidArgument("[bandwidth] reps must be >= 1, got " + std::to_string(reps));
        nb::gil_scoped_release nogil;
        cpu::ThreadPool pool(threads);
        return cpu::read_bandwidth_gbs(pool, static_cast<size_t>(mib) << 20, reps);
      },
      nb::arg("threads"), nb::arg("mib") = 1024, nb::arg("reps") = 3,
      "Read bandwidth of this machine in GB/s (1e9 bytes/s): `threads` threads sum a buffer of `mib`\n"
      "MiB (allocated and written once; default 1 GiB, far above the L3) in parallel; best of `reps`\n"
      "passes. Raises ValueError if threads is not in 1..512 or mib or reps < 1, MemoryError if the\n"
      "buffer cannot be allocated.");
  m.def(
      "cpu_info",
      [] {
        const cpu::CpuFeatures& f = cpu::cpu_features();
        nb::dict d;
        d["isa"] = cpu::isa_name(cpu::active_isa());  // the kernels in use (AKVQ_ISA caps it)
        d["avx2"] = f.avx2;
        d["avx512"] = f.avx512;
        d["avx512_vnni"] = f.avx512_vnni;
        d["avx512_bf16"] = f.avx512_bf16;
        d["avx512_kernels_compiled"] = cpu::avx512_compiled();
        return d;
      },
      "The CPU features this process detected and the kernel set in use: {'isa': 'avx512' | 'avx2' |\n"
      "'neon' | 'scalar', 'avx2', 'avx512', 'avx512_vnni', 'avx512_bf16', 'avx512_kernels_compiled'}.\n"
      "The environment variable AKVQ_ISA=avx2|scalar, read once, caps the kernel set.");
}

}  // namespace akvq::bind
