// PNG decoding with libpng (built when CMake finds libpng; codec_png_stub.cpp otherwise).
//
// Error handling: libpng reports errors through png_error_cb, which copies the message and
// longjmps to the setjmp of png_read_header, png_read_layout or png_read_rows. Those functions and every
// callback libpng runs are C-style: no object with a destructor lives in their frames, so the
// longjmp skips nothing that needs unwinding. decode_png (C++) owns the buffers and the libpng
// structures (a guard destroys them) and throws after a phase reports failure.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "akvq/image.h"
#include "image/codec.h"

namespace akvq::image {

namespace {

// Plain data shared with the callbacks.
struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[256];
};

void png_error_cb(png_structp png, png_const_charp msg) {
  PngSource* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof(src->message), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

void png_warning_cb(png_structp, png_const_charp) {}  // warnings (bad ancillary chunks...) are ignored, as PIL does

void png_read_cb(png_structp png, png_bytep out, size_t len) {
  PngSource* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (len > src->size - src->pos) png_error(png, "file is truncated (unexpected end of data)");
  std::memcpy(out, src->data + src->pos, len);
  src->pos += len;
}

struct PngHead {
  png_uint_32 width, height;
  int channels, bit_depth;
  size_t rowbytes;
};

// Phase 1: signature and header chunks; the image's size in head. 0 = ok. Nothing sized by the
// image is allocated yet: the caller checks the size first (png_read_update_info allocates and
// clears rows of the declared width: a 65-byte file declaring 2^31 - 1 columns took 6 GB there).
int png_read_header(png_structp png, png_infop info, PngSource* src, PngHead* head) {
  if (setjmp(png_jmpbuf(png))) return 1;
  png_set_read_fn(png, src, png_read_cb);
  // libpng's own limit is PNG's (2^31 - 1 per side), so a valid header of a too-large image reaches
  // check_decoded_size's message instead of "Invalid IHDR data"
  png_set_user_limits(png, 0x7fffffffU, 0x7fffffffU);
  png_read_info(png, info);
  head->width = png_get_image_width(png, info);
  head->height = png_get_image_height(png, info);
  return 0;
}

// Phase 2: the transformations and the output row layout. 0 = ok.
int png_read_layout(png_structp png, png_infop info, PngHead* head) {
  if (setjmp(png_jmpbuf(png))) return 1;
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // A transparency key becomes alpha (composited later), except on RGB images: transformers'
  // convert_to_rgb returns an image already in mode "RGB" (what Pillow opens an 8- or 16-bit RGB
  // PNG as) unchanged, key ignored, as LLaVA's own convert("RGB") does.
  if (png_get_valid(png, info, PNG_INFO_tRNS) && color != PNG_COLOR_TYPE_RGB) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  head->width = png_get_image_width(png, info);
  head->height = png_get_image_height(png, info);
  head->channels = png_get_channels(png, info);
  head->bit_depth = png_get_bit_depth(png, info);
  head->rowbytes = png_get_rowbytes(png, info);
  return 0;
}

// Phase 3: all rows (every interlace pass) into rows[height]. 0 = ok.
int png_read_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return 1;
  png_read_image(png, rows);
  return 0;
}

struct PngGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~PngGuard() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

std::string label(const std::string& name) {
  return name.empty() ? "<memory>" : name;
}

}  // namespace

bool png_available() {
  return true;
}

Decoded decode_png(const uint8_t* data, size_t size, const std::string& name) {
  PngSource src{data, size, 0, {0}};
  PngGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
  if (!g.png) throw Error("[image] " + label(name) + ": cannot create a libpng reader (" + src.message + ")");
  g.info = png_create_info_struct(g.png);
  if (!g.info) throw Error("[image] " + label(name) + ": cannot create a libpng info structure");
  PngHead head{};
  if (png_read_header(g.png, g.info, &src, &head) != 0) {
    throw FormatError("[image] " + label(name) + ": corrupt or truncated PNG (libpng: " + src.message + ")");
  }
  check_decoded_size("PNG", name, head.width, head.height);
  if (png_read_layout(g.png, g.info, &head) != 0) {
    throw FormatError("[image] " + label(name) + ": corrupt or truncated PNG (libpng: " + src.message + ")");
  }
  if (head.bit_depth != 8 || head.channels < 1 || head.channels > 4 ||
      head.rowbytes != static_cast<size_t>(head.width) * head.channels) {
    throw FormatError("[image] " + label(name) + ": unsupported PNG layout (" + std::to_string(head.channels) +
                      " channels of " + std::to_string(head.bit_depth) + " bits)");
  }
  Decoded out;
  out.width = static_cast<int>(head.width);
  out.height = static_cast<int>(head.height);
  out.channels = head.channels;
  out.data.resize(head.rowbytes * head.height);
  std::vector<png_bytep> rows(head.height);
  for (png_uint_32 y = 0; y < head.height; ++y) rows[y] = out.data.data() + y * head.rowbytes;
  if (png_read_rows(g.png, rows.data()) != 0) {
    throw FormatError("[image] " + label(name) + ": corrupt or truncated PNG (libpng: " + src.message + ")");
  }
  return out;
}

}  // namespace akvq::image
