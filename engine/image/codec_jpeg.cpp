// JPEG decoding with libjpeg (built when CMake finds it; codec_jpeg_stub.cpp otherwise).
//
// Error handling: libjpeg's default error_exit ends the process; ours copies the message and longjmps
// to the setjmp of jpeg_read_head or jpeg_read_pixels. A "premature end of file" warning (libjpeg
// would pad the image with gray) is fatal here too. Those functions and the callbacks are C-style:
// no object with a destructor lives in their frames. decode_jpeg (C++) owns the buffers and the
// decompressor (a guard destroys it) and throws after a phase reports failure.
#include <cstdio>  // jpeglib.h needs FILE and size_t first

#include <jerror.h>
#include <jpeglib.h>

#include <csetjmp>
#include <cstring>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "akvq/image.h"
#include "image/codec.h"

namespace akvq::image {

namespace {

struct JpegErrors {
  jpeg_error_mgr pub;  // first member: libjpeg sees a jpeg_error_mgr*
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit_cb(j_common_ptr cinfo) {
  JpegErrors* err = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_output_message_cb(j_common_ptr) {}  // never print

void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
  if (level >= 0) return;                                                // trace messages
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit_cb(cinfo);  // truncated file: an error
  cinfo->err->num_warnings++;                                            // other corrupt data: tolerated, as PIL
}

// Phase 1: decompressor, memory source, header. 0 = ok.
int jpeg_read_head(jpeg_decompress_struct* cinfo, JpegErrors* err, const uint8_t* data, size_t size) {
  if (setjmp(err->jump)) return 1;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  return 0;
}

// Phase 2: output colour space, every scanline into out [output_height, output_width, channels].
// 0 = ok, 2 = the output is not what the caller sized out for.
int jpeg_read_pixels(jpeg_decompress_struct* cinfo, JpegErrors* err, J_COLOR_SPACE space, int channels, uint8_t* out,
                     size_t out_size) {
  if (setjmp(err->jump)) return 1;
  cinfo->out_color_space = space;
  jpeg_start_decompress(cinfo);
  const size_t stride = static_cast<size_t>(cinfo->output_width) * channels;
  if (cinfo->output_components != channels || stride * cinfo->output_height != out_size) return 2;
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = out + static_cast<size_t>(cinfo->output_scanline) * stride;
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1) return 1;
  }
  return 0;
}

struct JpegGuard {
  jpeg_decompress_struct* cinfo;
  ~JpegGuard() { jpeg_destroy_decompress(cinfo); }  // safe on a zeroed or half-made decompressor
};

std::string label(const std::string& name) {
  return name.empty() ? "<memory>" : name;
}

}  // namespace

bool jpeg_available() {
  return true;
}

Decoded decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof(cinfo));
  JpegErrors err;
  std::memset(&err, 0, sizeof(err));
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_error_exit_cb;
  err.pub.output_message = jpeg_output_message_cb;
  err.pub.emit_message = jpeg_emit_message_cb;
  JpegGuard guard{&cinfo};
  if (jpeg_read_head(&cinfo, &err, data, size) != 0) {
    throw FormatError("[image] " + label(name) + ": corrupt or truncated JPEG (libjpeg: " + err.message + ")");
  }
  check_decoded_size("JPEG", name, cinfo.image_width, cinfo.image_height);
  Decoded out;
  J_COLOR_SPACE space = JCS_RGB;
  out.channels = 3;
  if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
    space = JCS_GRAYSCALE;
    out.channels = 1;
  } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    space = JCS_CMYK;
    out.channels = 4;
    out.cmyk = true;
  }
  out.width = static_cast<int>(cinfo.image_width);
  out.height = static_cast<int>(cinfo.image_height);
  out.data.resize(static_cast<size_t>(out.width) * out.height * out.channels);
  const int rc = jpeg_read_pixels(&cinfo, &err, space, out.channels, out.data.data(), out.data.size());
  if (rc == 2) {
    throw FormatError("[image] " + label(name) + ": unsupported JPEG layout (" +
                      std::to_string(cinfo.output_components) + " components)");
  }
  if (rc != 0) {
    throw FormatError("[image] " + label(name) + ": corrupt or truncated JPEG (libjpeg: " +
                      (err.message[0] ? std::string(err.message) : std::string("scanline read failed")) + ")");
  }
  return out;
}

}  // namespace akvq::image
