# AVX-512 kernels (engine/cpu/*_avx512.cpp, engine/cpu/avx512_target.h): compiled on x86-64 when
# the compiler accepts the target pragma and the VNNI / BF16 intrinsics, chosen at run time by
# engine/cpu/isa.cpp. -DAKVQ_AVX512=OFF leaves them out.
option(AKVQ_AVX512 "Compile the AVX-512 kernels (run-time dispatch) on x86-64" ON)
if(AKVQ_AVX512 AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_DEFINITIONS -DAKVQ_HAVE_AVX512_KERNELS=1)
  set(CMAKE_REQUIRED_INCLUDES ${CMAKE_CURRENT_SOURCE_DIR}/engine)
  check_cxx_source_compiles([=[
#include "cpu/avx512_target.h"
AKVQ_AVX512_BEGIN
__m512 f(__m512i a, __m512i b, __m512 c) {
  __m512i s = _mm512_dpwssd_epi32(a, a, b);
  return _mm512_dpbf16_ps(c, (__m512bh)s, (__m512bh)b);
}
AKVQ_AVX512_END
int main() { return 0; }
]=] AKVQ_AVX512_COMPILES)
  unset(CMAKE_REQUIRED_DEFINITIONS)
  unset(CMAKE_REQUIRED_INCLUDES)
  if(AKVQ_AVX512_COMPILES)
    target_compile_definitions(akvq_engine PUBLIC AKVQ_HAVE_AVX512_KERNELS=1)
  endif()
endif()
