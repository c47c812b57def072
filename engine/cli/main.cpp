// akvq-cli: run a GGUF model from the command line. Argument parsing and printing only; the
// work is done through the public engine API.
#include <akvq/engine.h>
#include <akvq/error.h>
#include <akvq/generate.h>
#include <akvq/image.h>
#include <akvq/multimodal.h>
#include <akvq/vision.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "args.h"
#include "demo_model.h"

namespace {

using Clock = std::chrono::steady_clock;

// Ctrl-C: the first SIGINT asks the generation to stop between tokens (and a prompt's evaluation
// between its chunks), so that the answer so far and the timings are printed and the command ends
// with 130, as llama.cpp's CLI does; the handler is reset by then (SA_RESETHAND), so a second
// Ctrl-C ends the process at once (a long load, a long image encoding).
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
  g_interrupted = 1;
}

void catch_sigint() {
  struct sigaction old{};
  if (sigaction(SIGINT, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) return;  // a background job's: kept
  struct sigaction sa{};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
}

// Thrown by the session's interrupt hook when Ctrl-C came during a prompt's evaluation.
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A text file read as bytes, whole, or standard input for "-", without one trailing newline (as
// llama.cpp's -f: a file's last line ends with one); `what_file` names it in errors.
std::string read_text_file(const std::string& path, const std::string& what_file) {
  const bool is_stdin = path == "-";
  const std::string what = is_stdin ? std::string("standard input (-f -)") : what_file + " '" + path + "'";
  if (!is_stdin) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) throw akvq::IoError("cannot read " + what + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) throw akvq::IoError("cannot read " + what + ": it is a directory, not a file");
  }
  std::FILE* f = is_stdin ? stdin : std::fopen(path.c_str(), "rb");
  if (!f) throw akvq::IoError("cannot read " + what + ": " + std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  if (!is_stdin) std::fclose(f);
  if (failed) throw akvq::IoError("cannot read " + what + ": " + std::strerror(err));
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.empty()) throw akvq::InvalidArgument(what + " is empty");
  return text;
}

// A failure that is not the input's fault (the output cannot be written): exit status 1.
struct OutputError : akvq::Error {
  using akvq::Error::Error;
};

// Writes generated text to stdout as it comes; a failed write (disk full, closed pipe) throws.
void write_out(const std::string& s) {
  if (s.empty()) return;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0)
    throw OutputError(std::string("cannot write the output to stdout: ") + std::strerror(errno));
}

// The KV cache's accounting: totals, then per layer the tokens/bytes of each precision class.
void print_kv_stats(const akvq::KvSummary& k) {
  std::fprintf(stderr, "kv cache:   mode %s, %lld tokens, %.2f MiB, %.3f bits/element\n", k.mode.c_str(),
               static_cast<long long>(k.n_tokens), k.bytes / 1048576.0, k.bits_per_element);
  std::string opts;
  for (const auto& [key, v] : k.options) opts += (opts.empty() ? "" : " ") + key + "=" + v;
  if (!opts.empty()) std::fprintf(stderr, "kv options: %s\n", opts.c_str());
  for (size_t il = 0; il < k.layers.size(); ++il) {
    std::string line;
    for (const auto& c : k.layers[il].classes) {
      line += "  " + c.name + " " + std::to_string(c.tokens) + " tok/" + std::to_string(c.bytes) + " B";
    }
    std::fprintf(stderr, "  layer %2zu:%s  pivots %zu\n", il, line.c_str(), k.layers[il].pivots.size());
  }
}

std::string apply_format(const std::string& text, const std::string& what, const std::string& prompt, int n_images,
                         const std::string& marker, const std::string& image_label);

// The prompt in the chat format --chat-template names (a built-in format or a FILE with {images}
// and {prompt}); n_images markers go first, each labelled as the model's template does
// (ModelInfo::image_label).
std::string format_prompt(const std::string& tmpl, const std::string& prompt, int n_images, const std::string& marker,
                          const std::string& image_label) {
  if (tmpl == "vicuna" || tmpl == "chatml" || tmpl == "none")
    return akvq::format_image_chat(tmpl, prompt, n_images, marker, image_label);
  struct stat st{};
  if (::stat(tmpl.c_str(), &st) != 0) {
    throw akvq::InvalidArgument("--chat-template '" + tmpl +
                                "': neither a built-in format (vicuna, chatml, none) nor a readable file");
  }
  const std::string text = read_text_file(tmpl, "--chat-template file");
  return apply_format(text, "--chat-template file '" + tmpl + "'", prompt, n_images, marker, image_label);
}

// `text` with {images} (image_lines) and {prompt} replaced; `what` names it in errors.
std::string apply_format(const std::string& text, const std::string& what, const std::string& prompt, int n_images,
                         const std::string& marker, const std::string& image_label) {
  if (text.find("{prompt}") == std::string::npos) {
    throw akvq::InvalidArgument(what + " has no {prompt} placeholder: the prompt would be dropped");
  }
  if (n_images > 0 && text.find("{images}") == std::string::npos) {
    throw akvq::InvalidArgument(what + " has no {images} placeholder for the " + std::to_string(n_images) + " image" +
                                (n_images == 1 ? "" : "s"));
  }
  const std::string images = akvq::image_lines(n_images, marker, image_label);
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 8, "{images}") == 0) {
      out += images;
      i += 8;
    } else if (text.compare(i, 8, "{prompt}") == 0) {
      out += prompt;
      i += 8;
    } else {
      out += text[i++];
    }
  }
  return out;
}

// The vision tower: --mmproj FILE (checked against the text model) or the model file's own.
std::shared_ptr<akvq::VisionModel> load_vision(const akvq::cli::Options& o, const std::shared_ptr<akvq::Model>& model) {
  if (!o.mmproj.empty()) {
    std::shared_ptr<akvq::VisionModel> v = akvq::VisionModel::load(o.mmproj);
    v->check_compatible(*model);
    return v;
  }
  try {
    return akvq::VisionModel::from_model(model);
  } catch (const akvq::Unavailable& e) {  // no vision encoder in the file, or one this engine cannot run
    throw akvq::InvalidArgument(std::string("--image: ") + e.what() +
                                " (a text model takes its vision tower, llama.cpp's mmproj file, with --mmproj FILE)");
  }
}

// A prompt with image markers and no --image, for a model with a vision encoder: refused as the
// engine refuses a marker count that differs from the images' (the marker's embedding would stand
// in for an image). A text model's "<image>" is text.
void refuse_image_markers(const akvq::cli::Options& o, const std::shared_ptr<akvq::Model>& model,
                          const std::string& prompt) {
  std::shared_ptr<akvq::VisionModel> vision;
  try {
    vision = load_vision(o, model);
  } catch (const akvq::InvalidArgument&) {
    if (!o.mmproj.empty()) throw;
    return;  // no vision encoder
  }
  const int32_t image_id = akvq::image_token_id(*model, *vision);
  akvq::image_prompt_input(akvq::tokenize_image_prompt(*model, prompt, image_id, true), image_id, {}, o.n_ctx);
}

// Decodes and preprocesses the --image files (PNG/JPEG through the engine's decoders).
std::vector<std::vector<float>> read_images(const akvq::cli::Options& o, const akvq::VisionModel& vision) {
  if (!akvq::can_decode(akvq::ImageFormat::Png) && !akvq::can_decode(akvq::ImageFormat::Jpeg)) {
    throw akvq::Unavailable("this build of akvq-cli cannot read images: it was built without libpng and libjpeg");
  }
  const akvq::PreprocessConfig cfg = akvq::preprocess_config(vision);
  std::vector<std::vector<float>> pixels;
  for (size_t k = 0; k < o.images.size(); ++k) {
    try {
      pixels.push_back(akvq::preprocess(akvq::load_image(o.images[k], cfg.alpha), cfg));
    } catch (const akvq::Unavailable& e) {
      throw akvq::Unavailable("--image '" + o.images[k] + "': this build cannot read it (" + e.what() + ")");
    } catch (const akvq::IoError& e) {
      throw akvq::IoError("--image '" + o.images[k] + "': " + e.what());
    } catch (const std::exception& e) {
      throw akvq::InvalidArgument("--image '" + o.images[k] + "': " + e.what());
    }
  }
  return pixels;
}

int run(const akvq::cli::Options& o) {
  if (o.prompt_file.empty() && o.prompt.empty())
    throw akvq::InvalidArgument("the prompt is empty (-p \"\"): give the text to continue");
  std::string prompt = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file, "prompt file");
  const auto t_load = Clock::now();
  akvq::ModelParams mp;
  mp.act_bits = o.act_bits;
  mp.device = o.device;
  std::shared_ptr<akvq::Model> model = akvq::Model::load(o.model, mp);
  akvq::SessionParams sp;
  sp.n_ctx = o.n_ctx;
  sp.n_threads = o.n_threads;
  sp.n_batch = o.n_batch;
  sp.kv = o.kv;
  sp.kv_options = o.kv_options;
  sp.interrupt = [] {
    if (g_interrupted) throw Interrupted();
  };
  akvq::Session session(model, sp);
  const double load_ms = ms_since(t_load);

  akvq::SessionInput input;
  double image_ms = 0;
  if (!o.images.empty()) {
    const auto t_img = Clock::now();
    std::shared_ptr<akvq::VisionModel> vision = load_vision(o, model);
    const int32_t image_id = akvq::image_token_id(*model, *vision);  // kImageSlot: "<image>" text marks images
    const std::string marker = akvq::image_marker(*model, image_id);
    bool add_special = true;
    if (prompt.find(marker) == std::string::npos) {  // a question: one chat turn, images first
      const int n = static_cast<int>(o.images.size());
      const std::string& turn = model->info().chat_image_turn;  // the model's template, rendered at conversion
      if (o.chat_template.empty() && !turn.empty()) {
        prompt = apply_format(turn, "akvq.chat.image_turn of " + o.model, prompt, n, marker, model->info().image_label);
      } else {
        prompt = format_prompt(o.chat_template.empty() ? "vicuna" : o.chat_template, prompt, n, marker,
                               model->info().image_label);
      }
      add_special = !akvq::starts_with_bos(*model, prompt);  // as Model.chat
    }
    const std::vector<int32_t> ids = akvq::tokenize_image_prompt(*model, prompt, image_id, add_special);
    const akvq::EncodedImages enc = akvq::encode_images(*vision, read_images(o, *vision), o.n_threads);
    input = akvq::image_prompt_input(ids, image_id, enc, o.n_ctx);
    image_ms = ms_since(t_img);
  } else {
    if (!o.mmproj.empty()) load_vision(o, model);  // as with images: a missing or wrong mmproj is refused
    if (!o.chat_template.empty()) prompt = format_prompt(o.chat_template, prompt, 0, "", "");
    if (prompt.find("<image>") != std::string::npos) refuse_image_markers(o, model, prompt);
    std::vector<int32_t> ids = model->tokenize(prompt, true, !o.no_special);
    if (ids.empty()) throw akvq::InvalidArgument("the prompt is empty after tokenization");
    if (static_cast<int>(ids.size()) > o.n_ctx)
      throw akvq::InvalidArgument("prompt has " + std::to_string(ids.size()) + " tokens, more than the context size " +
                                  std::to_string(o.n_ctx) + " (-c)");
    input = akvq::SessionInput(ids);
  }

  akvq::GenerateParams gp;
  gp.max_tokens = o.n_predict;
  gp.sampling = o.sampling;
  gp.stop = o.stop;
  if (g_interrupted) throw Interrupted();  // Ctrl-C during the load or the images
  akvq::Generator gen(session, input, gp);
  akvq::GenerateStep step;
  while (!g_interrupted && gen.next(step)) write_out(step.text);
  write_out("\n");
  const bool interrupted = g_interrupted != 0;

  const akvq::GenerateTimings& t = gen.timings();
  const int n_gen = gen.n_generated();
  std::fprintf(stderr, "\nload:       %8.1f ms\n", load_ms);
  if (!o.images.empty()) {
    std::fprintf(stderr, "images:     %8.1f ms / %5zu images (decode, preprocess, encode)\n", image_ms,
                 o.images.size());
  }
  std::fprintf(stderr, "prompt:     %8.1f ms / %5d tokens (%8.2f tokens/s)\n", t.prompt_ms, gen.n_prompt(),
               gen.n_prompt() * 1000.0 / std::max(t.prompt_ms, 1e-9));
  std::fprintf(stderr, "generation: %8.1f ms / %5d tokens (%8.2f tokens/s)\n", t.gen_ms, n_gen,
               n_gen * 1000.0 / std::max(t.gen_ms, 1e-9));
  std::fprintf(stderr, "finish:     %s\n", interrupted ? "interrupted" : akvq::finish_reason_name(gen.finish_reason()));
  if (!interrupted && gen.finish_reason() == akvq::FinishReason::Context) {
    std::fprintf(stderr, "akvq-cli: the context is full (-c %d tokens): generation stopped after %d tokens\n", o.n_ctx,
                 n_gen);
  }
  if (o.kv_stats) print_kv_stats(session.kv_summary());
  return interrupted ? 130 : 0;  // 130: the shell's status for Ctrl-C
}

}  // namespace

int main(int argc, char** argv) {
#ifdef SIGPIPE
  // A reader that closes the pipe (`akvq-cli ... | head -c 5`): the write fails with EPIPE and the
  // command ends with 1 as for any output it cannot write, instead of being killed by the signal.
  std::signal(SIGPIPE, SIG_IGN);
#endif
  akvq::cli::Options o;
  try {
    o = akvq::cli::parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "akvq-cli: error: %s\n", e.what());
    return 2;
  }
  if (const int rc = akvq::cli::print_info(o); rc >= 0) return rc;  // --help, --version, no arguments
  if (o.model.empty()) {
    std::vector<std::string> searched;
    o.model = akvq::cli::find_demo_model(argc > 0 ? argv[0] : nullptr, &searched);
    if (o.model.empty()) {
      std::string where;
      for (const auto& s : searched) where += (where.empty() ? "" : ", ") + s;
      std::fprintf(stderr, "akvq-cli: error: no model given (-m FILE), and no demo model found (looked for %s)\n",
                   where.c_str());
      return 2;
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(o.model, ec)) {  // $AKVQ_DEMO_MODEL naming nothing: one line
      std::fprintf(stderr, "akvq-cli: error: no model given (-m FILE), and the demo model %s is not a file\n",
                   searched.empty() ? o.model.c_str() : searched.back().c_str());
      return 2;
    }
    std::fprintf(stderr, "akvq-cli: no -m given: the demo model %s\n", o.model.c_str());
  }
  // Exit status: 2 for bad input (options, prompt, a missing, unreadable or malformed file, what
  // this build or machine cannot do), as for a bad argument and as pyakvq's commands; 1 for the
  // rest (the output cannot be written, out of memory, an internal error).
  catch_sigint();
  try {
    return run(o);
  } catch (const Interrupted&) {  // Ctrl-C before the first token (the load, the prompt)
    std::fflush(stdout);
    std::fprintf(stderr, "\nakvq-cli: interrupted\n");
    return 130;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "akvq-cli: error: %s\n", e.what());
    const bool bad_input = dynamic_cast<const akvq::InvalidArgument*>(&e) || dynamic_cast<const akvq::FormatError*>(&e) ||
                           dynamic_cast<const akvq::IoError*>(&e) || dynamic_cast<const akvq::Unavailable*>(&e);
    return bad_input ? 2 : 1;
  }
}
