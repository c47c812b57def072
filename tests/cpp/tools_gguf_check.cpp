// tools_gguf_check FILE...: opens each file with the GGUF reader and prints `OK <path>` or
// `ERR <path>: <message>`. Exit status 0 unless something other than akvq::Error escaped (then 2).
// Used by the malformed-input tests to run a corpus under AddressSanitizer/UBSan.
#include <akvq/error.h>

#include <cstdio>
#include <exception>

#include "gguf/gguf.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 1;
  }
  int status = 0;
  for (int k = 1; k < argc; ++k) {
    try {
      const auto f = akvq::gguf::File::open(argv[k]);
      // Touch every tensor's first and last byte so a bad range would show up under ASan.
      volatile unsigned sum = 0;
      for (const akvq::TensorView& t : f->tensors()) {
        const auto* p = static_cast<const unsigned char*>(t.data);
        sum += p[0] + p[t.nbytes - 1];
      }
      std::printf("OK %s\n", argv[k]);
    } catch (const akvq::Error& e) {
      std::printf("ERR %s: %s\n", argv[k], e.what());
    } catch (const std::exception& e) {
      std::printf("CRASH %s: unexpected %s\n", argv[k], e.what());
      status = 2;
    }
    std::fflush(stdout);
  }
  return status;
}
