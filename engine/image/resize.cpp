// PIL-exact resizing of RGB images (see resize.h for the algorithm and its rounding).
#include "image/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "akvq/error.h"

namespace akvq::image {

namespace {

constexpr int kPrecisionBits = 22;  // fixed-point fraction of the weights: 32 - 8 (pixel) - 2 (headroom)
constexpr double kPi = 3.14159265358979323846;

// ---- the filters (kernel value at distance x, in input pixels of the unscaled filter) ----
double filter_box(double x) {
  return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

double filter_bilinear(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double filter_bicubic(double x) {  // Keys' cubic convolution with a = -0.5
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

double filter_lanczos(double x) {  // 3-lobed
  return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
}

double filter_hamming(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * kPi;
  // The window's constants are single-precision floats in PIL; keep them so.
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}

struct Filter {
  double (*fn)(double);
  double support;  // half-width of the unscaled kernel
};

Filter filter_of(Resample r) {
  switch (r) {
    case Resample::Box: return {filter_box, 0.5};
    case Resample::Bilinear: return {filter_bilinear, 1.0};
    case Resample::Hamming: return {filter_hamming, 1.0};
    case Resample::Bicubic: return {filter_bicubic, 2.0};
    case Resample::Lanczos: return {filter_lanczos, 3.0};
    case Resample::Nearest: break;
  }
  throw InvalidArgument(std::string("[image] resize: no convolution filter for ") + resample_name(r));
}

// Fixed-point weights of output positions [first, first + count) of a resize in_size -> out_size
// along one axis.
struct Coeffs {
  int ksize = 0;
  std::vector<int> start;  // [count] first input index of each output position
  std::vector<int> n;      // [count] number of input pixels used
  std::vector<int32_t> k;  // [count, ksize] weights in 1/2^22 units (first n[i] used)
};

Coeffs precompute(int in_size, int out_size, int first, int count, const Filter& f) {
  Coeffs c;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = f.support * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.start.resize(count);
  c.n.resize(count);
  c.k.assign(static_cast<size_t>(count) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  const double ss = 1.0 / filterscale;
  for (int i = 0; i < count; ++i) {
    const int xx = first + i;
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as PIL rounds here
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = f.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    int32_t* k = &c.k[static_cast<size_t>(i) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.start[i] = xmin;
    c.n[i] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift: floor
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// out[y, :] for rows [0, out.height): out column i from src row (row0 + y), input columns
// (c.start[i] - col0 ...) of src, coefficient row i.
void pass_horizontal(const Image& src, int row0, int col0, const Coeffs& c, Image& out) {
  const int32_t half = 1 << (kPrecisionBits - 1);
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* in = src.row(row0 + y);
    uint8_t* o = out.row(y);
    for (int i = 0; i < out.width; ++i) {
      const int32_t* k = &c.k[static_cast<size_t>(i) * c.ksize];
      const uint8_t* p = in + static_cast<size_t>(c.start[i] - col0) * 3;
      int32_t r = half, g = half, b = half;
      for (int x = 0; x < c.n[i]; ++x, p += 3) {
        r += p[0] * k[x];
        g += p[1] * k[x];
        b += p[2] * k[x];
      }
      o[i * 3 + 0] = clip8(r);
      o[i * 3 + 1] = clip8(g);
      o[i * 3 + 2] = clip8(b);
    }
  }
}

// out row j from src rows (c.start[j] - row0 ...), columns [col0, col0 + out.width) of src.
void pass_vertical(const Image& src, int row0, int col0, const Coeffs& c, Image& out) {
  const int32_t half = 1 << (kPrecisionBits - 1);
  const size_t stride = static_cast<size_t>(src.width) * 3;
  for (int j = 0; j < out.height; ++j) {
    const int32_t* k = &c.k[static_cast<size_t>(j) * c.ksize];
    const uint8_t* base = src.row(c.start[j] - row0) + static_cast<size_t>(col0) * 3;
    uint8_t* o = out.row(j);
    for (int i = 0; i < out.width * 3; ++i) {
      const uint8_t* p = base + i;
      int32_t acc = half;
      for (int y = 0; y < c.n[j]; ++y, p += stride) acc += *p * k[y];
      o[i] = clip8(acc);
    }
  }
}

// Columns [x, x + w) and rows [y, y + h) of src (a plain copy).
Image copy_window(const Image& src, const Window& win) {
  Image out(win.width, win.height);
  for (int j = 0; j < win.height; ++j) {
    std::copy_n(src.row(win.y + j) + static_cast<size_t>(win.x) * 3, static_cast<size_t>(win.width) * 3, out.row(j));
  }
  return out;
}

// Input index of every output position in [first, first + count): PIL's affine scaling walks a
// double position from scale / 2 in steps of scale (accumulated, not multiplied) and truncates it;
// -1 marks a position outside the input (left black, never happens for a plain resize).
std::vector<int> nearest_index(int in_size, int out_size, int first, int count) {
  std::vector<int> idx(count, -1);
  const double step = static_cast<double>(in_size) / out_size;
  double pos = step * 0.5;
  for (int i = 0; i < first + count; ++i, pos += step) {
    if (i < first) continue;
    const int v = pos < 0.0 ? -1 : static_cast<int>(pos);
    idx[i - first] = (v >= 0 && v < in_size) ? v : -1;
  }
  return idx;
}

Image resize_nearest(const Image& src, int out_width, int out_height, const Window& win) {
  const std::vector<int> xs = nearest_index(src.width, out_width, win.x, win.width);
  const std::vector<int> ys = nearest_index(src.height, out_height, win.y, win.height);
  Image out(win.width, win.height);
  for (int j = 0; j < win.height; ++j) {
    if (ys[j] < 0) continue;
    const uint8_t* in = src.row(ys[j]);
    uint8_t* o = out.row(j);
    for (int i = 0; i < win.width; ++i) {
      if (xs[i] < 0) continue;
      std::copy_n(in + static_cast<size_t>(xs[i]) * 3, 3, o + static_cast<size_t>(i) * 3);
    }
  }
  return out;
}

void check_size(const char* what, int width, int height) {
  if (width < 1 || height < 1) {
    throw InvalidArgument(std::string("[image] resize: ") + what + " size " + std::to_string(width) + "x" +
                          std::to_string(height) + " is empty");
  }
}

}  // namespace

void shortest_side_size(int width, int height, int shortest, int* out_width, int* out_height) {
  check_size("input", width, height);
  if (shortest < 1) throw InvalidArgument("[image] resize: shortest side " + std::to_string(shortest) + " < 1");
  const bool portrait = width <= height;
  const int s = portrait ? width : height;
  const int l = portrait ? height : width;
  // transformers: int(size * long / short) with Python's float division, i.e. one correctly
  // rounded double quotient of the exact integer product, then truncation.
  const double q = static_cast<double>(static_cast<int64_t>(shortest) * l) / s;
  if (q >= 2147483647.0) {
    throw InvalidArgument("[image] resize: the long side would be " + std::to_string(q) + " pixels");
  }
  const int long_side = static_cast<int>(q);
  *out_width = portrait ? shortest : long_side;
  *out_height = portrait ? long_side : shortest;
}

Image resize_window(const Image& src, int out_width, int out_height, Resample r, const Window& win) {
  check_size("input", src.width, src.height);
  check_size("output", out_width, out_height);
  if (win.width < 1 || win.height < 1 || win.x < 0 || win.y < 0 || win.x > out_width - win.width ||
      win.y > out_height - win.height) {
    throw InvalidArgument("[image] resize: window " + std::to_string(win.width) + "x" + std::to_string(win.height) +
                          "+" + std::to_string(win.x) + "+" + std::to_string(win.y) + " outside the " +
                          std::to_string(out_width) + "x" + std::to_string(out_height) + " result");
  }
  if (out_width == src.width && out_height == src.height) return copy_window(src, win);
  if (r == Resample::Nearest) return resize_nearest(src, out_width, out_height, win);

  const Filter f = filter_of(r);
  const bool need_h = out_width != src.width;
  const bool need_v = out_height != src.height;
  // Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as many
  // pixels as the width; before that the horizontal pass always ran first. The pass order changes
  // rounding (each pass rounds to uint8), so it is followed exactly.
  const int64_t dh = static_cast<int64_t>(src.height) - out_height;
  const int64_t dw = static_cast<int64_t>(src.width) - out_width;
  const bool horizontal_first = !(dh > 0 && dh > dw * 2);
  Image out(win.width, win.height);
  if (!need_v) {  // one horizontal pass over the window's rows
    pass_horizontal(src, win.y, 0, precompute(src.width, out_width, win.x, win.width, f), out);
    return out;
  }
  const Coeffs cv = precompute(src.height, out_height, win.y, win.height, f);
  if (!need_h) {
    pass_vertical(src, 0, win.x, cv, out);
    return out;
  }
  const Coeffs ch = precompute(src.width, out_width, win.x, win.width, f);
  if (horizontal_first) {
    const int row_first = cv.start.front();
    const int row_last = cv.start.back() + cv.n.back();  // one past the last input row used
    Image tmp(win.width, row_last - row_first);          // input rows [row_first, row_last), resized horizontally
    pass_horizontal(src, row_first, 0, ch, tmp);
    pass_vertical(tmp, row_first, 0, cv, out);
  } else {
    const int col_first = ch.start.front();
    const int col_last = ch.start.back() + ch.n.back();  // one past the last input column used
    Image tmp(col_last - col_first, win.height);         // input columns [col_first, col_last), resized vertically
    pass_vertical(src, 0, col_first, cv, tmp);
    pass_horizontal(tmp, 0, col_first, ch, out);
  }
  return out;
}

Image resize(const Image& src, int out_width, int out_height, Resample r) {
  Window all;
  all.width = out_width;
  all.height = out_height;
  return resize_window(src, out_width, out_height, r, all);
}

}  // namespace akvq::image
