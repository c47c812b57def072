// Prompts with images (akvq/multimodal.h).
#include "akvq/multimodal.h"

#include <cstring>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "gguf/gguf.h"
#include "image/gguf_config.h"

namespace akvq {

const char* const kLlavaSystemPrompt =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";

PreprocessConfig preprocess_config(const VisionModel& vision) {
  const VisionInfo& i = vision.info();
  std::unique_ptr<gguf::File> f = gguf::File::open(i.path);
  const AspectMode absent = i.pad_mode == "crop" ? AspectMode::Crop : AspectMode::Pad;
  PreprocessConfig c = image::preprocess_config_from_gguf(*f, absent);
  c.validate();
  return c;
}

uint64_t pixel_hash(const float* pixels, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(pixels);
  for (size_t k = 0; k < n * sizeof(float); ++k) {
    h ^= p[k];
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

EncodedImages encode_images(const VisionModel& vision, const std::vector<std::vector<float>>& pixels, int n_threads) {
  const VisionInfo& i = vision.info();
  if (pixels.empty()) throw InvalidArgument("[vision] no image to encode");
  const size_t per = static_cast<size_t>(3) * i.image_size * i.image_size;  // [3, S, S]
  std::vector<float> all;
  all.reserve(per * pixels.size());
  EncodedImages out;
  for (size_t k = 0; k < pixels.size(); ++k) {
    if (pixels[k].size() != per) {
      throw InvalidArgument("[vision] image " + std::to_string(k) + ": " + std::to_string(pixels[k].size()) +
                            " pixel values, the vision model takes 3 x " + std::to_string(i.image_size) + " x " +
                            std::to_string(i.image_size));
    }
    all.insert(all.end(), pixels[k].begin(), pixels[k].end());
    out.hashes.push_back(pixel_hash(pixels[k].data(), per));
  }
  out.n_images = static_cast<int>(pixels.size());
  out.n_tokens_per_image = i.n_tokens_per_image;
  out.n_embd = i.n_embd;
  out.rows = vision.encode(all.data(), out.n_images, n_threads);
  return out;
}

int32_t image_token_id(const Model& text, const VisionModel& vision) {
  const int32_t id = vision.info().image_token_id;
  if (id >= 0) return id;
  const std::vector<int32_t> ids = text.tokenize("<image>", false, true);
  if (ids.size() == 1 && text.token_piece(ids[0], true) == "<image>") return ids[0];
  return kImageSlot;
}

std::string image_marker(const Model& text, int32_t image_token) {
  return image_token >= 0 ? text.token_piece(image_token, true) : std::string("<image>");
}

std::vector<int32_t> tokenize_image_prompt(const Model& text, const std::string& prompt, int32_t image_token,
                                           bool add_special) {
  if (image_token >= 0) return text.tokenize(prompt, add_special, true);
  static const std::string marker = "<image>";
  std::vector<int32_t> ids;
  size_t begin = 0;
  bool first = true;
  for (;;) {
    const size_t at = prompt.find(marker, begin);
    const std::string piece = prompt.substr(begin, at == std::string::npos ? std::string::npos : at - begin);
    if (!piece.empty() || (first && add_special)) {
      const std::vector<int32_t> t = text.tokenize(piece, first && add_special, true);
      ids.insert(ids.end(), t.begin(), t.end());
    }
    first = false;
    if (at == std::string::npos) break;
    ids.push_back(kImageSlot);
    begin = at + marker.size();
  }
  return ids;
}

SessionInput image_prompt_input(const std::vector<int32_t>& ids, int32_t image_token_id, const EncodedImages& images,
                                int n_ctx) {
  size_t n_markers = 0;
  for (int32_t t : ids) n_markers += t == image_token_id;
  if (static_cast<int>(n_markers) != images.n_images) {
    throw InvalidArgument("the prompt has " + std::to_string(n_markers) + " image marker" +
                          (n_markers == 1 ? "" : "s") + " but " + std::to_string(images.n_images) + " image" +
                          (images.n_images == 1 ? " was" : "s were") + " given (one marker per image)");
  }
  const size_t n_text = ids.size() - n_markers;
  const size_t n_image_rows = static_cast<size_t>(images.n_images) * images.n_tokens_per_image;
  if (n_ctx > 0 && n_text + n_image_rows > static_cast<size_t>(n_ctx)) {
    throw InvalidArgument("the prompt takes " + std::to_string(n_text + n_image_rows) + " tokens (text " +
                          std::to_string(n_text) + ", " + std::to_string(images.n_images) + " image" +
                          (images.n_images == 1 ? "" : "s") + " x " + std::to_string(images.n_tokens_per_image) +
                          " = " + std::to_string(n_image_rows) +
                          "), more than the context size n_ctx=" + std::to_string(n_ctx));
  }
  SessionInput in;
  std::vector<int32_t> run;
  int k = 0;
  const size_t per = static_cast<size_t>(images.n_tokens_per_image) * images.n_embd;
  for (int32_t t : ids) {
    if (t != image_token_id) {
      run.push_back(t);
      continue;
    }
    if (!run.empty()) in.add_tokens(run, TokenKind::Text);
    run.clear();
    in.add_embeddings(images.rows.data() + per * k, images.n_tokens_per_image, images.n_embd, TokenKind::Vision,
                      images.hashes[k], image_token_id);
    ++k;
  }
  if (!run.empty()) in.add_tokens(run, TokenKind::Text);
  return in;
}

std::string image_lines(int n_images, const std::string& marker, const std::string& image_label) {
  std::string images;
  for (int k = 0; k < n_images; ++k) {
    images += marker + "\n";
    if (n_images < 2) continue;
    std::string label = image_label;
    for (size_t at = label.find("{k}"); at != std::string::npos; at = label.find("{k}", at)) {
      const std::string num = std::to_string(k + 1);
      label.replace(at, 3, num);
      at += num.size();
    }
    images += label;
  }
  return images;
}

bool starts_with_bos(const Model& text, const std::string& prompt) {
  const int32_t bos = text.info().bos;
  if (bos < 0) return false;
  const std::string piece = text.token_piece(bos, true);
  return !piece.empty() && prompt.compare(0, piece.size(), piece) == 0;
}

std::string format_image_chat(const std::string& format, const std::string& prompt, int n_images,
                              const std::string& marker, const std::string& image_label) {
  const std::string images = image_lines(n_images, marker, image_label);
  if (format == "vicuna") return std::string(kLlavaSystemPrompt) + " USER: " + images + prompt + " ASSISTANT:";
  if (format == "chatml") return "<|im_start|>user\n" + images + prompt + "<|im_end|>\n<|im_start|>assistant\n";
  if (format == "none") return images + prompt;
  throw InvalidArgument("unknown chat format '" + format + "' (built-in formats: vicuna, chatml, none)");
}

}  // namespace akvq
