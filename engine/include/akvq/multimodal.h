// Public C++ API for prompts with images: the model file's image preprocessing, encoding a call's
// images together, the decoder input where each image marker of a prompt becomes the image's
// embedding rows, and the built-in chat formats of akvq-cli (Python renders Jinja templates).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "akvq/image.h"
#include "akvq/vision.h"

namespace akvq {

// The preprocessing the vision model's file describes (clip.vision.* / akvq.vision.* keys); a
// file that does not state its aspect mode gets LLaVA-1.5's pad-to-square. Throws FormatError.
PreprocessConfig preprocess_config(const VisionModel& vision);

// The images of one call, encoded together.
struct EncodedImages {
  int n_images = 0;
  int n_tokens_per_image = 0;    // rows per image
  int n_embd = 0;                // width of a row (the text model's n_embd)
  std::vector<float> rows;       // [n_images * n_tokens_per_image, n_embd], image after image
  std::vector<uint64_t> hashes;  // [n_images] content hash of each image's preprocessed pixels
};

// 64-bit FNV-1a hash of the bytes of n floats (never 0): an image's content identity in the cache.
uint64_t pixel_hash(const float* pixels, size_t n);

// pixels: one preprocessed image each ([3, image_size, image_size], see preprocess()). Encodes them
// in one call to vision.encode. Throws InvalidArgument (no image, wrong size, naming the index).
EncodedImages encode_images(const VisionModel& vision, const std::vector<std::vector<float>>& pixels,
                            int n_threads = 0);

// The image token of a text model + vision tower pair: the vision file's image token id, else the
// text vocabulary's "<image>" token; -1 when neither has one (llama.cpp's published LLaVA-1.5
// files): prompts then mark images with the text "<image>" (tokenize_image_prompt).
int32_t image_token_id(const Model& text, const VisionModel& vision);
// Marks an image's place in tokenized prompts of models without an image token.
constexpr int32_t kImageSlot = -1;
// The text that marks an image in a prompt: the image token's text, or "<image>".
std::string image_marker(const Model& text, int32_t image_token);
// Tokenizes a prompt whose image markers stand for images. With an image token (>= 0), the whole
// text as Model::tokenize(prompt, add_special, parse_special = true) (the marker is that token).
// Without (-1): the text is split at each "<image>", the first piece tokenized with add_special,
// the later ones without (as llama.cpp's LLaVA tools do), each marker becoming kImageSlot.
std::vector<int32_t> tokenize_image_prompt(const Model& text, const std::string& prompt, int32_t image_token,
                                           bool add_special = true);

// The decoder input of a tokenized prompt in which each image_token_id stands for one image, in
// order: text rows (kind text) and each marker replaced by its image's rows (kind vision, content
// hash of the image). Throws InvalidArgument when the markers and the images differ in number
// (saying both) or when the input is longer than n_ctx (n_ctx > 0; saying how many tokens the
// text and the images take).
SessionInput image_prompt_input(const std::vector<int32_t>& ids, int32_t image_token_id, const EncodedImages& images,
                                int n_ctx = 0);

// Built-in chat formats for a single user turn with images first (one marker per image, each on
// its own line), then the question, then the opening of the assistant's turn:
//   "vicuna": LLaVA-1.5's conv_vicuna_v1 "{system} USER: <image>\n{q} ASSISTANT:"
//   "chatml": "<|im_start|>user\n<image>\n{q}<|im_end|>\n<|im_start|>assistant\n"
//   "none":   "<image>\n{q}"
// Throws InvalidArgument for another name.
std::string format_image_chat(const std::string& format, const std::string& prompt, int n_images,
                              const std::string& marker = "<image>", const std::string& image_label = "");
// The images' lines of those formats: n_images times marker + "\n", each followed by
// image_label with "{k}" replaced by the image's number (from 1) when n_images > 1 (ModelInfo's
// image_label: the model's template's convention).
std::string image_lines(int n_images, const std::string& marker, const std::string& image_label = "");
// Whether a formatted chat prompt starts with the model's BOS text: then it is tokenized without
// a second BOS (Model.chat, akvq-cli's chat formats).
bool starts_with_bos(const Model& text, const std::string& prompt);
// LLaVA-1.5's system prompt (the "vicuna" format's).
extern const char* const kLlavaSystemPrompt;

}  // namespace akvq
