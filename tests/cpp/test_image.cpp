// Image preprocessing and decoding (engine/image/): resize properties, crop/pad geometry, RGB
// conversion, normalization, config errors, PNG/JPEG decoding of files made here, and corrupt,
// truncated, zero-size and unsupported files (typed errors, never a crash; the C++ tests run
// under ASan/UBSan in tests/python/test_cpp.py). Pixel parity with PIL and Hugging Face is tested
// in tests/python/test_image.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "akvq/error.h"
#include "akvq/image.h"
#include "gguf/gguf.h"
#include "image/geometry.h"
#include "image/gguf_config.h"
#include "image/resize.h"
#include "test_image_util.h"
#include "test_llama_gguf_writer.h"

using namespace akvq;
using akvq_test::make_png;
using akvq_test::PngSpec;

namespace {

Image random_image(int w, int h, uint32_t seed) {
  Image im(w, h);
  std::mt19937 rng(seed);
  for (auto& v : im.data) v = static_cast<uint8_t>(rng() & 0xff);
  return im;
}

Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image im(w, h);
  for (size_t i = 0; i < im.data.size(); i += 3) {
    im.data[i] = r;
    im.data[i + 1] = g;
    im.data[i + 2] = b;
  }
  return im;
}

const uint8_t* px(const Image& im, int x, int y) {
  return im.row(y) + static_cast<size_t>(x) * 3;
}

// Runs f, expects exception E whose message contains `part`.
template <typename E, typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << part << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

std::vector<uint8_t> png_rgb(int w, int h, uint32_t seed) {
  PngSpec s;
  s.width = w;
  s.height = h;
  s.color_type = 2;
  s.rows = random_image(w, h, seed).data;
  return make_png(s);
}

const Resample kFilters[] = {Resample::Nearest, Resample::Lanczos, Resample::Bilinear,
                             Resample::Bicubic, Resample::Box,     Resample::Hamming};

}  // namespace

// ---- Image and RGB conversion ----

TEST(ImageBasic, SizeLimitsAreTypedErrors) {
  expect_error<InvalidArgument>([] { Image(0, 5); }, "zero-size");
  expect_error<InvalidArgument>([] { Image(5, 0); }, "zero-size");
  expect_error<InvalidArgument>([] { Image(kMaxImageSide + 1, 1); }, "out of range");
  expect_error<InvalidArgument>([] { Image(20000, 20000); }, "out of range");
  const Image im(3, 2);
  EXPECT_EQ(im.data.size(), 18u);
  EXPECT_FALSE(im.empty());
  EXPECT_TRUE(Image().empty());
}

TEST(ImageToRgb, GrayAndAlpha) {
  const uint8_t gray[] = {0, 100, 255};
  Image g = to_rgb(gray, 3, 1, 1);
  EXPECT_EQ(g.data, (std::vector<uint8_t>{0, 0, 0, 100, 100, 100, 255, 255, 255}));
  // alpha 0 -> white; alpha 255 -> the value; 50% -> PIL's rounding of v*a/255 + 255*(1 - a/255)
  const uint8_t la[] = {10, 0, 10, 255, 100, 128, 0, 1};
  Image w = to_rgb(la, 4, 1, 2, AlphaMode::White);
  EXPECT_EQ(w.data[0], 255);
  EXPECT_EQ(w.data[3], 10);
  EXPECT_EQ(w.data[6], static_cast<uint8_t>(std::lround(100 * 128 / 255.0 + 255 * (1 - 128 / 255.0))));
  EXPECT_EQ(w.data[9], 254);
  Image d = to_rgb(la, 4, 1, 2, AlphaMode::Drop);
  EXPECT_EQ(d.data, (std::vector<uint8_t>{10, 10, 10, 10, 10, 10, 100, 100, 100, 0, 0, 0}));
  const uint8_t rgba[] = {1, 2, 3, 255, 200, 100, 50, 0};
  EXPECT_EQ(to_rgb(rgba, 2, 1, 4, AlphaMode::White).data, (std::vector<uint8_t>{1, 2, 3, 255, 255, 255}));
  EXPECT_EQ(to_rgb(rgba, 2, 1, 4, AlphaMode::Drop).data, (std::vector<uint8_t>{1, 2, 3, 200, 100, 50}));
}

TEST(ImageToRgb, BadChannelCount) {
  const uint8_t buf[10] = {};
  expect_error<InvalidArgument>([&] { to_rgb(buf, 1, 1, 5); }, "5 channels");
  expect_error<InvalidArgument>([&] { to_rgb(buf, 0, 1, 3); }, "zero-size");
}

// ---- resize ----

TEST(ImageResize, ShortestSideRounding) {
  int w = 0, h = 0;
  image::shortest_side_size(300, 40, 336, &w, &h);
  EXPECT_EQ(w, 2520);
  EXPECT_EQ(h, 336);
  image::shortest_side_size(40, 300, 336, &w, &h);
  EXPECT_EQ(w, 336);
  EXPECT_EQ(h, 2520);
  image::shortest_side_size(337, 335, 336, &w, &h);  // int(336 * 337 / 335) = int(338.006)
  EXPECT_EQ(w, 338);
  EXPECT_EQ(h, 336);
  image::shortest_side_size(500, 375, 336, &w, &h);  // 448 exactly
  EXPECT_EQ(w, 448);
  image::shortest_side_size(3, 7, 10, &w, &h);  // int(23.333)
  EXPECT_EQ(h, 23);
  image::shortest_side_size(20, 20, 336, &w, &h);
  EXPECT_EQ(w, 336);
  EXPECT_EQ(h, 336);
  expect_error<InvalidArgument>([&] { image::shortest_side_size(0, 5, 336, &w, &h); }, "empty");
}

TEST(ImageResize, SameSizeIsACopy) {
  const Image src = random_image(17, 9, 1);
  for (Resample r : kFilters) EXPECT_EQ(image::resize(src, 17, 9, r).data, src.data) << resample_name(r);
}

TEST(ImageResize, ConstantStaysConstant) {
  const Image src = solid(23, 11, 7, 128, 250);
  for (Resample r : kFilters) {
    for (auto [w, h] : {std::pair{5, 3}, {40, 30}, {23, 50}, {1, 1}, {336, 7}}) {
      const Image out = image::resize(src, w, h, r);
      ASSERT_EQ(out.width, w);
      ASSERT_EQ(out.height, h);
      EXPECT_EQ(out.data, solid(w, h, 7, 128, 250).data) << resample_name(r) << " " << w << "x" << h;
    }
  }
}

TEST(ImageResize, WindowEqualsCropOfFullResize) {
  const Image src = random_image(37, 23, 2);
  std::mt19937 rng(3);
  for (Resample r : kFilters) {
    for (auto [w, h] : {std::pair{80, 50}, {13, 7}, {37, 60}, {90, 23}}) {
      const Image full = image::resize(src, w, h, r);
      for (int t = 0; t < 5; ++t) {
        image::Window win;
        win.width = 1 + static_cast<int>(rng() % w);
        win.height = 1 + static_cast<int>(rng() % h);
        win.x = static_cast<int>(rng() % (w - win.width + 1));
        win.y = static_cast<int>(rng() % (h - win.height + 1));
        const Image part = image::resize_window(src, w, h, r, win);
        for (int y = 0; y < win.height; ++y) {
          for (int x = 0; x < win.width; ++x) {
            for (int c = 0; c < 3; ++c) {
              ASSERT_EQ(px(part, x, y)[c], px(full, win.x + x, win.y + y)[c]) << resample_name(r);
            }
          }
        }
      }
    }
  }
}

TEST(ImageResize, NearestIntegerUpscaleRepeatsPixels) {
  const Image src = random_image(5, 4, 4);
  const Image out = image::resize(src, 15, 8, Resample::Nearest);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 15; ++x) {
      for (int c = 0; c < 3; ++c) ASSERT_EQ(px(out, x, y)[c], px(src, x / 3, y / 2)[c]);
    }
  }
}

TEST(ImageResize, BoxHalvingAveragesPairs) {
  // Box filter at scale 2: weights 1/2, 1/2 -> (a + b) / 2 rounded half up, per pass.
  Image src(4, 1);
  const uint8_t vals[] = {10, 11, 200, 0};
  for (int x = 0; x < 4; ++x) src.data[x * 3] = src.data[x * 3 + 1] = src.data[x * 3 + 2] = vals[x];
  const Image out = image::resize(src, 2, 1, Resample::Box);
  EXPECT_EQ(out.data[0], 11);   // 10.5 -> 11
  EXPECT_EQ(out.data[3], 100);  // 100
}

TEST(ImageResize, BilinearGradientIsMonotone) {
  Image src(64, 3);
  for (int x = 0; x < 64; ++x) {
    for (int y = 0; y < 3; ++y) std::fill_n(src.row(y) + x * 3, 3, static_cast<uint8_t>(x * 4));
  }
  for (int w : {10, 31, 64 * 3 + 1}) {
    const Image out = image::resize(src, w, 5, Resample::Bilinear);
    for (int x = 1; x < w; ++x) EXPECT_LE(px(out, x - 1, 2)[0], px(out, x, 2)[0]) << w << " at " << x;
  }
}

TEST(ImageResize, BadArguments) {
  const Image src = random_image(4, 4, 5);
  expect_error<InvalidArgument>([&] { image::resize(src, 0, 4, Resample::Bicubic); }, "empty");
  expect_error<InvalidArgument>([&] { image::resize(Image(), 4, 4, Resample::Bicubic); }, "empty");
  image::Window win;
  win.x = 3;
  win.width = 2;
  win.height = 1;
  expect_error<InvalidArgument>([&] { image::resize_window(src, 4, 4, Resample::Bicubic, win); }, "outside");
  expect_error<InvalidArgument>([] { resample_from_code(6); }, "not a PIL filter code");
  EXPECT_EQ(resample_from_code(3), Resample::Bicubic);
}

// ---- crop and pad geometry ----

TEST(ImageGeometry, CenterCropOffsetsFloor) {
  auto o = image::center_crop_offsets(5, 8, 2, 3);  // (5 - 2) // 2 = 1, (8 - 3) // 2 = 2
  EXPECT_EQ(o.top, 1);
  EXPECT_EQ(o.left, 2);
  o = image::center_crop_offsets(5, 4, 8, 7);  // (5 - 8) // 2 = -2, (4 - 7) // 2 = -2
  EXPECT_EQ(o.top, -2);
  EXPECT_EQ(o.left, -2);
}

TEST(ImageGeometry, CenterCropInside) {
  const Image src = random_image(9, 6, 6);
  const Image c = image::center_crop(src, 3, 4);  // top 1, left 2
  ASSERT_EQ(c.width, 4);
  ASSERT_EQ(c.height, 3);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 4; ++x) EXPECT_EQ(px(c, x, y)[1], px(src, x + 2, y + 1)[1]);
  }
}

TEST(ImageGeometry, CenterCropLargerThanImagePadsWithZeros) {
  // transformers: the image lands at ceil((crop - size) / 2) from the top/left, zeros around it.
  const Image src = solid(3, 2, 9, 9, 9);  // width 3, height 2
  const Image c = image::center_crop(src, 5, 6);
  ASSERT_EQ(c.width, 6);
  ASSERT_EQ(c.height, 5);
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 6; ++x) {
      const bool inside = y >= 2 && y < 4 && x >= 2 && x < 5;  // ceil(3/2) = 2, ceil(3/2) = 2
      EXPECT_EQ(px(c, x, y)[0], inside ? 9 : 0) << x << "," << y;
    }
  }
  // mixed: taller crop, narrower width
  const Image src2 = random_image(8, 2, 7);
  const Image c2 = image::center_crop(src2, 4, 4);  // rows: pad at 1; columns: offset 2
  EXPECT_EQ(px(c2, 0, 0)[0], 0);
  EXPECT_EQ(px(c2, 0, 1)[0], px(src2, 2, 0)[0]);
  EXPECT_EQ(px(c2, 3, 2)[2], px(src2, 5, 1)[2]);
  EXPECT_EQ(px(c2, 3, 3)[2], 0);
}

TEST(ImageGeometry, PadToSquareCentersLikeExpand2Square) {
  const std::array<uint8_t, 3> bg{122, 116, 104};
  const Image wide = solid(5, 2, 1, 2, 3);
  const Image sq = image::pad_to_square(wide, bg);  // 5x5, image at rows [1, 3)
  ASSERT_EQ(sq.width, 5);
  ASSERT_EQ(sq.height, 5);
  for (int y = 0; y < 5; ++y) EXPECT_EQ(px(sq, 0, y)[0], (y == 1 || y == 2) ? 1 : 122) << y;
  const Image tall = solid(2, 5, 1, 2, 3);
  const Image sq2 = image::pad_to_square(tall, bg);  // columns [1, 3)
  for (int x = 0; x < 5; ++x) EXPECT_EQ(px(sq2, x, 4)[2], (x == 1 || x == 2) ? 3 : 104) << x;
  const Image same = random_image(4, 4, 8);
  EXPECT_EQ(image::pad_to_square(same, bg).data, same.data);
  expect_error<InvalidArgument>([&] { image::pad_to_square(Image(), bg); }, "empty");
  expect_error<InvalidArgument>([&] { image::pad_to_square(Image(kMaxImageSide, 1), bg); },
                                "pad mode: the 65535x1 image padded to a square would be 65535x65535 pixels");
}

// ---- preprocess ----

TEST(ImagePreprocess, ShapeAndNormalization) {
  PreprocessConfig cfg;
  cfg.image_size = 32;
  cfg.crop_height = 24;
  cfg.crop_width = 30;
  const Image src = solid(50, 20, 0, 128, 255);
  const std::vector<float> out = preprocess(src, cfg);
  ASSERT_EQ(out.size(), 3u * 24 * 30);
  for (int c = 0; c < 3; ++c) {
    const int v = c == 0 ? 0 : (c == 1 ? 128 : 255);
    const float x = static_cast<float>(v * (1.0 / 255.0));
    const float want = (x - cfg.mean[c]) / cfg.std[c];
    for (int i = 0; i < 24 * 30; ++i) ASSERT_EQ(out[c * 24 * 30 + i], want) << c;  // CHW, bit-exact
  }
}

TEST(ImagePreprocess, PadModeUsesTheMeanColour) {
  PreprocessConfig cfg;
  EXPECT_EQ(cfg.pad_color(), (std::array<uint8_t, 3>{122, 116, 104}));
  cfg.image_size = cfg.crop_height = cfg.crop_width = 16;
  cfg.mode = AspectMode::Pad;
  const std::vector<float> out = preprocess(solid(16, 4, 122, 116, 104), cfg);
  for (int c = 0; c < 3; ++c) {
    const float x = static_cast<float>(cfg.pad_color()[c] * (1.0 / 255.0));
    EXPECT_EQ(out[c * 256], (x - cfg.mean[c]) / cfg.std[c]);
    EXPECT_EQ(out[c * 256 + 255], out[c * 256]);
  }
  // crop mode on the same wide image: the crop sees only the image (no pad colour)
  cfg.mode = AspectMode::Crop;
  const std::vector<float> crop = preprocess(solid(16, 4, 0, 0, 0), cfg);
  EXPECT_EQ(crop[0], (0.0f - cfg.mean[0]) / cfg.std[0]);
}

TEST(ImagePreprocess, CropLargerThanResizedIsBlack) {
  PreprocessConfig cfg;
  cfg.image_size = 8;
  cfg.crop_height = 12;
  cfg.crop_width = 8;
  const std::vector<float> out = preprocess(solid(8, 8, 255, 255, 255), cfg);
  const float black = (0.0f - cfg.mean[0]) / cfg.std[0];
  const float white = (1.0f - cfg.mean[0]) / cfg.std[0];
  EXPECT_EQ(out[0], black);       // row 0: padding (rows [2, 10) hold the image)
  EXPECT_EQ(out[2 * 8], white);   // row 2
  EXPECT_EQ(out[10 * 8], black);  // row 10
}

TEST(ImagePreprocess, ConfigErrorsNameTheField) {
  const Image src = solid(4, 4, 1, 1, 1);
  PreprocessConfig cfg;
  cfg.image_size = 0;
  expect_error<InvalidArgument>([&] { preprocess(src, cfg); }, "image_size");
  cfg = PreprocessConfig();
  cfg.crop_width = 9000;
  expect_error<InvalidArgument>([&] { preprocess(src, cfg); }, "crop_width");
  cfg = PreprocessConfig();
  cfg.std[1] = 0.0f;
  expect_error<InvalidArgument>([&] { preprocess(src, cfg); }, "std[1]");
  cfg = PreprocessConfig();
  cfg.mean[2] = NAN;
  expect_error<InvalidArgument>([&] { preprocess(src, cfg); }, "mean[2]");
  cfg = PreprocessConfig();
  cfg.rescale_factor = -1;
  expect_error<InvalidArgument>([&] { preprocess(src, cfg); }, "rescale_factor");
  expect_error<InvalidArgument>([&] { preprocess(Image(), PreprocessConfig()); }, "empty image");
  expect_error<InvalidArgument>([] { aspect_mode_from_name("stretch"); }, "'crop' or 'pad'");
}

TEST(ImagePreprocess, ExtremeAspectRatioComputesOnlyTheCrop) {
  // 2 x 4000 -> resized 336 x 672000 (never materialized); the crop is the middle.
  PreprocessConfig cfg;
  const std::vector<float> out = preprocess(solid(2, 4000, 10, 20, 30), cfg);
  ASSERT_EQ(out.size(), cfg.n_values());
  const float x = static_cast<float>(10 * (1.0 / 255.0));
  EXPECT_EQ(out[12345], (x - cfg.mean[0]) / cfg.std[0]);
}

TEST(ImagePreprocess, ConfigFromModelFile) {
  using akvq_test_gguf = akvq::testing::GgufWriter;
  {  // our converter's keys
    akvq_test_gguf w;
    w.u32("clip.vision.image_size", 336);
    w.u32("akvq.vision.resize_shortest_edge", 350);
    w.f32_array("clip.vision.image_mean", {0.5f, 0.25f, 0.125f});
    w.f32_array("clip.vision.image_std", {0.2f, 0.3f, 0.4f});
    w.str("akvq.vision.resample", "bilinear");
    w.f32("akvq.vision.rescale_factor", static_cast<float>(1.0 / 255.0));
    w.str("akvq.vision.pad_mode", "pad");
    w.i32_array("akvq.vision.pad_color", {1, 2, 3});
    const std::vector<uint8_t> b = w.bytes();
    const auto f = gguf::File::from_bytes(b.data(), b.size(), "m.gguf");
    const PreprocessConfig c = image::preprocess_config_from_gguf(*f);
    EXPECT_EQ(c.image_size, 350);
    EXPECT_EQ(c.crop_height, 336);
    EXPECT_EQ(c.crop_width, 336);
    EXPECT_EQ(c.mean[2], 0.125f);
    EXPECT_EQ(c.std[1], 0.3f);
    EXPECT_EQ(c.resample, Resample::Bilinear);
    EXPECT_EQ(c.rescale_factor, 1.0 / 255.0);  // the double transformers uses, not the stored float
    EXPECT_EQ(c.mode, AspectMode::Pad);
    EXPECT_EQ(c.pad_color(), (std::array<uint8_t, 3>{1, 2, 3}));
  }
  {  // llama.cpp's mmproj keys only: CLIP defaults, the mode the caller gives
    akvq_test_gguf w;
    w.u32("clip.vision.image_size", 224);
    const std::vector<uint8_t> b = w.bytes();
    const auto f = gguf::File::from_bytes(b.data(), b.size(), "mmproj.gguf");
    const PreprocessConfig c = image::preprocess_config_from_gguf(*f, AspectMode::Crop);
    EXPECT_EQ(c.image_size, 224);
    EXPECT_EQ(c.resample, Resample::Bicubic);
    EXPECT_EQ(c.mode, AspectMode::Crop);
    EXPECT_EQ(c.pad_color(), (std::array<uint8_t, 3>{122, 116, 104}));
    EXPECT_EQ(image::preprocess_config_from_gguf(*f).mode, AspectMode::Pad);
  }
  {  // bad values name the key
    akvq_test_gguf w;
    w.u32("clip.vision.image_size", 224);
    w.str("akvq.vision.resample", "cubic");
    const std::vector<uint8_t> b = w.bytes();
    const auto f = gguf::File::from_bytes(b.data(), b.size(), "bad.gguf");
    expect_error<FormatError>([&] { image::preprocess_config_from_gguf(*f); }, "akvq.vision.resample");
  }
  {
    akvq_test_gguf w;
    w.u32("clip.vision.image_size", 224);
    w.f32_array("clip.vision.image_std", {0.2f, 0.0f, 0.4f});
    const std::vector<uint8_t> b = w.bytes();
    const auto f = gguf::File::from_bytes(b.data(), b.size(), "bad.gguf");
    expect_error<FormatError>([&] { image::preprocess_config_from_gguf(*f); }, "std[1]");
  }
}

// ---- decoding ----

TEST(ImageDecode, FormatByMagicBytes) {
  const std::vector<uint8_t> png = png_rgb(2, 2, 1);
  EXPECT_EQ(detect_image_format(png.data(), png.size()), ImageFormat::Png);
  EXPECT_EQ(detect_image_format(akvq_test::kJpegRgb16, sizeof(akvq_test::kJpegRgb16)), ImageFormat::Jpeg);
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0};
  EXPECT_EQ(detect_image_format(gif, sizeof(gif)), ImageFormat::Gif);
  expect_error<FormatError>([&] { decode_image(gif, sizeof(gif)); }, "GIF images are not supported");
  const uint8_t webp[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P'};
  expect_error<FormatError>([&] { decode_image(webp, sizeof(webp)); }, "WebP");
  const uint8_t junk[] = {'h', 'e', 'l', 'l', 'o'};
  expect_error<FormatError>([&] { decode_image(junk, sizeof(junk), AlphaMode::White, "x.png"); },
                            "x.png: not a PNG or JPEG");
  expect_error<FormatError>([&] { decode_image(junk, 0); }, "empty image data");
}

TEST(ImageDecode, PngColourTypes) {
  if (!can_decode(ImageFormat::Png)) GTEST_SKIP() << "built without libpng";
  {  // RGB 8-bit
    const Image ref = random_image(7, 5, 9);
    PngSpec s;
    s.width = 7;
    s.height = 5;
    s.rows = ref.data;
    const std::vector<uint8_t> f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size()).data, ref.data);
  }
  {  // gray 1-bit: 0 -> 0, 1 -> 255
    PngSpec s;
    s.width = 3;
    s.height = 1;
    s.color_type = 0;
    s.bit_depth = 1;
    s.rows = {0xA0};  // 1 0 1
    const std::vector<uint8_t> f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size()).data, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255}));
  }
  {  // palette with a transparent entry: composited onto white, or dropped
    PngSpec s;
    s.width = 2;
    s.height = 1;
    s.color_type = 3;
    s.palette = {10, 20, 30, 40, 50, 60};
    s.trns = {0};  // entry 0 fully transparent
    s.rows = {0, 1};
    const std::vector<uint8_t> f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size(), AlphaMode::White).data,
              (std::vector<uint8_t>{255, 255, 255, 40, 50, 60}));
    EXPECT_EQ(decode_image(f.data(), f.size(), AlphaMode::Drop).data, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));
  }
  {  // gray + alpha, RGBA
    PngSpec s;
    s.width = 1;
    s.height = 2;
    s.color_type = 4;
    s.rows = {100, 0, 100, 255};
    std::vector<uint8_t> f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size()).data, (std::vector<uint8_t>{255, 255, 255, 100, 100, 100}));
    s.color_type = 6;
    s.rows = {1, 2, 3, 0, 4, 5, 6, 255};
    f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size(), AlphaMode::Drop).data, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  }
  {  // 16-bit RGB: the high byte
    PngSpec s;
    s.width = 1;
    s.height = 1;
    s.bit_depth = 16;
    s.rows = {0x12, 0xff, 0x34, 0x00, 0xab, 0x80};
    const std::vector<uint8_t> f = make_png(s);
    EXPECT_EQ(decode_image(f.data(), f.size()).data, (std::vector<uint8_t>{0x12, 0x34, 0xab}));
  }
}

TEST(ImageDecode, BrokenPngsAreFormatErrors) {
  if (!can_decode(ImageFormat::Png)) GTEST_SKIP() << "built without libpng";
  const std::vector<uint8_t> good = png_rgb(40, 30, 10);
  ASSERT_NO_THROW(decode_image(good.data(), good.size()));
  // truncated at every few bytes: header, IHDR, inside IDAT, before IEND
  for (size_t n = 1; n < good.size(); n += (n < 64 ? 1 : 97)) {
    expect_error<FormatError>([&] { decode_image(good.data(), n, AlphaMode::White, "t.png"); }, "t.png");
  }
  {  // IHDR CRC broken
    std::vector<uint8_t> f = good;
    f[29] ^= 0xff;
    expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "corrupt or truncated PNG");
  }
  {  // zlib data broken (stored block length does not match its complement)
    std::vector<uint8_t> f = good;
    const size_t idat = 8 + 25 + 8 + 2;  // signature, IHDR chunk, IDAT length+type, zlib header
    f[idat + 3] ^= 0x55;
    // fix the chunk CRC so that libpng gets to inflate
    const uint32_t len = (f[33] << 24) | (f[34] << 16) | (f[35] << 8) | f[36];
    const uint32_t crc = akvq_test::crc32(f.data() + 37, 4 + len);
    for (int i = 0; i < 4; ++i) f[41 + len + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "PNG");
  }
  PngSpec s;
  s.width = 0;
  s.height = 4;
  std::vector<uint8_t> f = make_png(s);
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "PNG");  // zero width (libpng refuses)
  s.width = 70000;
  s.height = 1;
  f = make_png(s);
  // over the side limit: the size named, not libpng's "Invalid IHDR data"
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "PNG of 70000x1 pixels is larger than the limit");
  s.width = 10;
  s.height = 100000;
  f = make_png(s);
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "PNG of 10x100000 pixels is larger than the limit");
  s.width = 20000;
  s.height = 20000;
  f = make_png(s);
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "larger than the limit");
  s.width = 4;
  s.height = 4;
  s.rows = std::vector<uint8_t>(4 * 4 * 3 / 2, 7);  // IDAT holds half the rows
  s.height = 2;
  f = make_png(s);
  f[16 + 7] = 4;  // IHDR height says 4 (CRC fixed below)
  const uint32_t crc = akvq_test::crc32(f.data() + 12, 17);
  for (int i = 0; i < 4; ++i) f[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "PNG");
}

TEST(ImageDecode, Jpeg) {
  if (!can_decode(ImageFormat::Jpeg)) GTEST_SKIP() << "built without libjpeg";
  const Image rgb = decode_image(akvq_test::kJpegRgb16, sizeof(akvq_test::kJpegRgb16));
  ASSERT_EQ(rgb.width, 16);
  ASSERT_EQ(rgb.height, 16);
  const uint8_t want[4][3] = {{220, 30, 30}, {30, 200, 40}, {20, 40, 210}, {240, 240, 240}};
  const int corner[4][2] = {{2, 2}, {13, 2}, {2, 13}, {13, 13}};
  for (int q = 0; q < 4; ++q) {
    for (int c = 0; c < 3; ++c) EXPECT_NEAR(px(rgb, corner[q][0], corner[q][1])[c], want[q][c], 4) << q;
  }
  const Image gray = decode_image(akvq_test::kJpegGray16, sizeof(akvq_test::kJpegGray16));
  EXPECT_NEAR(px(gray, 2, 2)[0], 220, 4);
  EXPECT_EQ(px(gray, 2, 2)[0], px(gray, 2, 2)[2]);
  EXPECT_NEAR(px(gray, 13, 13)[1], 240, 4);
}

TEST(ImageDecode, BrokenJpegsAreFormatErrors) {
  if (!can_decode(ImageFormat::Jpeg)) GTEST_SKIP() << "built without libjpeg";
  const uint8_t* good = akvq_test::kJpegRgb16;
  const size_t n = sizeof(akvq_test::kJpegRgb16);
  for (size_t k = 3; k < n; k += 7) {  // every truncation is an error (no gray padding)
    expect_error<FormatError>([&] { decode_image(good, k, AlphaMode::White, "t.jpg"); }, "t.jpg");
  }
  std::vector<uint8_t> f(good, good + n);
  size_t sof = 0;  // SOF0 segment: FF C0, length, precision, height, width
  while (sof + 1 < n && !(f[sof] == 0xff && f[sof + 1] == 0xc0)) ++sof;
  ASSERT_LT(sof + 9, n);
  f[sof + 5] = f[sof + 6] = 0;  // height 0
  expect_error<FormatError>([&] { decode_image(f.data(), f.size()); }, "corrupt or truncated JPEG");
  f.assign(good, good + n);
  for (size_t i = 2; i < 40; ++i) f[i] = 0xff;  // markers destroyed: an error or an image, no crash
  try {
    decode_image(f.data(), f.size());
  } catch (const FormatError&) {
  }
  const uint8_t soi_only[] = {0xff, 0xd8, 0xff};
  expect_error<FormatError>([&] { decode_image(soi_only, sizeof(soi_only)); }, "JPEG");
  // garbage after the header: decodes with libjpeg warnings or fails, never crashes
  std::vector<uint8_t> g(good, good + n);
  std::mt19937 rng(11);
  for (int t = 0; t < 50; ++t) {
    std::vector<uint8_t> h = g;
    for (int k = 0; k < 8; ++k) h[200 + rng() % (n - 200)] = static_cast<uint8_t>(rng());
    try {
      const Image im = decode_image(h.data(), h.size());
      EXPECT_EQ(im.width, 16);
    } catch (const FormatError&) {
    }
  }
}

TEST(ImageDecode, RandomCorruptionIsAnErrorOrAnImage) {
  // Mutated files (CRCs fixed so PNG mutations reach inflate and the row filters): each decode
  // returns an image or throws FormatError; under ASan/UBSan nothing leaks or overflows.
  if (!can_decode(ImageFormat::Png) && !can_decode(ImageFormat::Jpeg)) GTEST_SKIP() << "built without codecs";
  std::mt19937 rng(21);
  int errors = 0, images = 0;
  const auto attempt = [&](const std::vector<uint8_t>& f) {
    try {
      const Image im = decode_image(f.data(), f.size());
      EXPECT_EQ(im.data.size(), static_cast<size_t>(im.width) * im.height * 3);
      ++images;
    } catch (const FormatError&) {
      ++errors;
    }
  };
  if (can_decode(ImageFormat::Png)) {
    PngSpec s;
    s.width = 9;
    s.height = 7;
    s.color_type = 6;
    s.rows = random_image(12, 7, 22).data;  // 9 x 7 RGBA = 252 bytes
    s.rows.resize(9 * 7 * 4);
    const std::vector<uint8_t> good = make_png(s);
    for (int t = 0; t < 400; ++t) {
      std::vector<uint8_t> f = good;
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < n; ++k) f[8 + rng() % (f.size() - 8)] = static_cast<uint8_t>(rng());
      if (t % 3 == 0) f.resize(8 + rng() % (f.size() - 8));
      akvq_test::fix_png_crcs(f);
      attempt(f);
    }
  }
  if (can_decode(ImageFormat::Jpeg)) {
    const std::vector<uint8_t> good(akvq_test::kJpegRgb16, akvq_test::kJpegRgb16 + sizeof(akvq_test::kJpegRgb16));
    for (int t = 0; t < 400; ++t) {
      std::vector<uint8_t> f = good;
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < n; ++k) f[3 + rng() % (f.size() - 3)] = static_cast<uint8_t>(rng());
      if (t % 3 == 0) f.resize(3 + rng() % (f.size() - 3));
      attempt(f);
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(images, 0);
}

TEST(ImageDecode, LoadImageFiles) {
  char dir_tmpl[] = "/tmp/akvq_image_testXXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  const auto write = [&](const std::string& name, const uint8_t* d, size_t n) {
    std::FILE* fp = std::fopen((dir + "/" + name).c_str(), "wb");
    ASSERT_NE(fp, nullptr);
    if (n) {
      ASSERT_EQ(std::fwrite(d, 1, n, fp), n);
    }
    std::fclose(fp);
  };
  const std::vector<uint8_t> png = png_rgb(6, 3, 12);
  write("image.jpg", png.data(), png.size());  // a PNG named .jpg: the magic bytes decide
  write("empty.png", nullptr, 0);
  write("photo.png", akvq_test::kJpegRgb16, sizeof(akvq_test::kJpegRgb16));
  if (can_decode(ImageFormat::Png)) {
    EXPECT_EQ(load_image(dir + "/image.jpg").width, 6);
  } else {
    expect_error<Unavailable>([&] { load_image(dir + "/image.jpg"); }, "cannot read PNG");
  }
  if (can_decode(ImageFormat::Jpeg)) {
    EXPECT_EQ(load_image(dir + "/photo.png").height, 16);
  }
  expect_error<FormatError>([&] { load_image(dir + "/empty.png"); }, "empty file");
  expect_error<IoError>([&] { load_image(dir + "/missing.png"); }, "missing.png");
  expect_error<IoError>([&] { load_image(dir); }, "directory");
  for (const char* f : {"image.jpg", "empty.png", "photo.png"}) std::remove((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}
