// Where akvq-cli finds the demo VLM when no -m is given: the same file pyakvq.demo_model_path()
// names (pyakvq/demo.py).
#pragma once
#include <string>
#include <vector>

namespace akvq::cli {

// The demo model's path, or "" when none of the places exists; `searched` (if not null) gets every
// place looked at, in order:
//   1. $AKVQ_DEMO_MODEL when set and not empty (pyakvq.demo's override, a leading ~ expanded;
//      returned even if missing, so that loading it names the file);
//   2. the pyakvq package installed with this binary: pip puts akvq-cli in <prefix>/bin and the
//      package in <prefix>/lib[64]/python3.X/site-packages (dist-packages: Debian's system pip), so
//      <binary's dir>/../lib[64]/python*/{site,dist}-packages/pyakvq/data/demo-vlm.gguf, newest
//      Python first;
//   3. the source tree of a build directory inside it: <binary's dir>/../../pyakvq/data/demo-vlm.gguf.
// argv0 is used when /proc/self/exe cannot be read.
std::string find_demo_model(const char* argv0, std::vector<std::string>* searched = nullptr);

}  // namespace akvq::cli
