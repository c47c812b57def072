// demo_model.h: finding the demo model beside the binary.
#include "demo_model.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <utility>

namespace akvq::cli {

namespace fs = std::filesystem;

namespace {

fs::path binary_dir(const char* argv0) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec || exe.empty()) exe = fs::absolute(argv0 ? argv0 : "", ec);
  return exe.parent_path();
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

std::string find_demo_model(const char* argv0, std::vector<std::string>* searched) {
  auto note = [&](const std::string& s) {
    if (searched) searched->push_back(s);
  };
  if (const char* env = std::getenv("AKVQ_DEMO_MODEL"); env && *env) {
    std::string p = env;
    const char* home = std::getenv("HOME");
    if (home && (p == "~" || p.rfind("~/", 0) == 0)) p = home + p.substr(1);  // as pathlib's expanduser()
    note("$AKVQ_DEMO_MODEL (" + p + ")");
    return p;
  }
  const fs::path data = fs::path("pyakvq") / "data" / "demo-vlm.gguf";
  const fs::path dir = binary_dir(argv0);
  for (const char* lib : {"lib", "lib64"}) {
    const fs::path base = dir / ".." / lib;
    std::error_code ec;
    std::vector<std::pair<std::pair<int, int>, fs::path>> pythons;  // ((major, minor), dir)
    for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
      int major = 0, minor = 0;
      if (std::sscanf(it->path().filename().string().c_str(), "python%d.%d", &major, &minor) >= 1) {
        pythons.push_back({{major, minor}, it->path()});
      }
    }
    std::sort(pythons.rbegin(), pythons.rend());                       // the newest Python first
    for (const char* packages : {"site-packages", "dist-packages"}) {  // dist-packages: Debian's pip
      note((base / "python*" / packages / data).lexically_normal().string());
      for (const auto& py : pythons) {
        const fs::path p = py.second / packages / data;
        if (is_file(p)) return p.lexically_normal().string();
      }
    }
  }
  const fs::path tree = (dir / ".." / ".." / data).lexically_normal();
  note(tree.string());
  if (is_file(tree)) return tree.string();
  return "";
}

}  // namespace akvq::cli
