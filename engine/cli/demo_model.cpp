// demo_model.h: finding the demo model beside the binary.
#include "demo_model.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

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
    note(std::string("$AKVQ_DEMO_MODEL (") + env + ")");
    return env;
  }
  const fs::path data = fs::path("pyakvq") / "data" / "demo-vlm.gguf";
  const fs::path dir = binary_dir(argv0);
  for (const char* lib : {"lib", "lib64"}) {
    const fs::path base = dir / ".." / lib;
    note((base / "python*" / "site-packages" / data).lexically_normal().string());
    std::error_code ec;
    std::vector<fs::path> pythons;
    for (fs::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().filename().string().rfind("python", 0) == 0) pythons.push_back(it->path());
    }
    std::sort(pythons.rbegin(), pythons.rend());  // the newest Python first
    for (const auto& py : pythons) {
      const fs::path p = py / "site-packages" / data;
      if (is_file(p)) return p.lexically_normal().string();
    }
  }
  const fs::path tree = (dir / ".." / ".." / data).lexically_normal();
  note(tree.string());
  if (is_file(tree)) return tree.string();
  return "";
}

}  // namespace akvq::cli
