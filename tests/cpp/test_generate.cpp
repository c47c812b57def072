// The generation loop (akvq/generate.h): TextStream's UTF-8 assembly and stop strings, and the
// Generator on a synthetic byte-level model (random weights, so sampling produces arbitrary
// bytes, invalid UTF-8 included): finish reasons, valid text, determinism, session misuse.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "akvq/error.h"
#include "akvq/generate.h"
#include "test_llama_synth.h"

namespace {

using akvq::FinishReason;
using akvq::GenerateParams;
using akvq::GenerateStep;
using akvq::Generator;
using akvq::TextStream;

const std::string kFFFD = "\xEF\xBF\xBD";

std::string feed_all(TextStream& ts, const std::vector<std::string>& chunks) {
  std::string out;
  for (const auto& c : chunks) out += ts.feed(c);
  return out + ts.finish();
}

bool valid_utf8(const std::string& s) {
  TextStream ts;
  return feed_all(ts, {s}) == s;  // a valid text decodes to itself, anything else changes
}

TEST(TextStream, WholeCharactersOnly) {
  TextStream ts;
  EXPECT_EQ(ts.feed("a\xF0\x9F"), "a");  // the rocket's first two bytes are held
  EXPECT_EQ(ts.feed("\x9A"), "");
  EXPECT_EQ(ts.feed("\x80!"), "\xF0\x9F\x9A\x80!");
  EXPECT_EQ(ts.finish(), "");
}

TEST(TextStream, InvalidBytesBecomeReplacementCharacters) {
  // One U+FFFD per maximal invalid subpart, as Python's decode(errors="replace").
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xFF", kFFFD},
      {"\xC0\xAF", kFFFD + kFFFD},                          // overlong: C0 never starts a character
      {"\xED\xA0\x80", kFFFD + kFFFD + kFFFD},              // a surrogate
      {"\xF4\x90\x80\x80", kFFFD + kFFFD + kFFFD + kFFFD},  // above U+10FFFF
      {"\xE2\x82x", kFFFD + "x"},                           // truncated, then ASCII
      {"\xF0\x9F\xC3\xA9", kFFFD + "\xC3\xA9"},             // truncated, then a valid character
      {"\xE2\x82", kFFFD},                                  // truncated at the end
      {"\x80\x80", kFFFD + kFFFD},
  };
  for (const auto& [in, want] : cases) {
    TextStream whole;
    EXPECT_EQ(feed_all(whole, {in}), want);
    TextStream bytewise;
    std::vector<std::string> bytes;
    for (char c : in) bytes.emplace_back(1, c);
    EXPECT_EQ(feed_all(bytewise, bytes), want);
  }
}

TEST(TextStream, StopStringsAreCutAndHeldBack) {
  TextStream ts({"STOP", "", "xy"});
  EXPECT_EQ(ts.feed("abc S"), "abc ");  // "S" may start "STOP"
  EXPECT_EQ(ts.feed("T"), "");
  EXPECT_EQ(ts.feed("ar"), "STar");  // it did not
  EXPECT_EQ(ts.feed("x"), "");
  EXPECT_EQ(ts.feed("STOPxy tail"), "x");  // "STOP" ends before "xy": cut before it
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.feed("more"), "");
  EXPECT_EQ(ts.finish(), "");

  TextStream partial({"STOP"});
  EXPECT_EQ(partial.feed("the ST"), "the ");
  EXPECT_EQ(partial.finish(), "ST");  // a partial stop string at the end is plain text
  EXPECT_FALSE(partial.stopped());

  TextStream tie({"BC", "ABC"});  // both end at the same place: the longer one cuts
  EXPECT_EQ(feed_all(tie, {"xAB", "C"}), "x");
  TextStream split({"\xC3\xA9t\xC3\xA9"});  // "été", fed byte by byte
  EXPECT_EQ(feed_all(split, {"l'\xC3", "\xA9", "t", "\xC3", "\xA9", "!"}), "l'");
}

TEST(GenerateParams, Validation) {
  GenerateParams p;
  p.max_tokens = -1;
  EXPECT_THROW(p.validate(), akvq::InvalidArgument);
  p.max_tokens = 4;
  p.stop = {"ok", "\xFF"};
  EXPECT_THROW(p.validate(), akvq::InvalidArgument);
  p.stop = {"ok"};
  p.sampling.top_p = 2.0f;
  EXPECT_THROW(p.validate(), akvq::InvalidArgument);
}

class GeneratorSynth : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    akvq::testing::SynthLlama m(5, true, 8);
    path_ = ::testing::TempDir() + "akvq_generate_synth.gguf";
    const std::vector<uint8_t> bytes = m.gguf();
    std::ofstream f(path_, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  static std::shared_ptr<akvq::Model> model() { return akvq::Model::load(path_); }
  static akvq::SessionParams session_params(int n_ctx) {
    akvq::SessionParams p;
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    return p;
  }
  static GenerateParams sampled(int max_tokens, uint64_t seed) {
    GenerateParams g;
    g.max_tokens = max_tokens;
    g.sampling.temperature = 1.5f;
    g.sampling.top_k = 0;
    g.sampling.top_p = 1.0f;
    g.sampling.seed = seed;
    return g;
  }
  struct Run {
    std::vector<int32_t> ids;
    std::string text;
    FinishReason finish = FinishReason::None;
  };
  static Run run(Generator& g) {
    Run r;
    GenerateStep st;
    while (g.next(st)) {
      r.ids.push_back(st.id);
      r.text += st.text;
      EXPECT_TRUE(valid_utf8(st.text));
      EXPECT_EQ(st.finish == FinishReason::None, !g.done());
    }
    r.finish = g.finish_reason();
    return r;
  }
  static std::string path_;
};
std::string GeneratorSynth::path_;

TEST_F(GeneratorSynth, LengthTextAndDeterminism) {
  auto m = model();
  akvq::Session s(m, session_params(256));
  const std::vector<int32_t> prompt = {'h', 'e', 'l', 'l', 'o'};
  Generator g(s, prompt, sampled(40, 7));
  const Run a = run(g);
  EXPECT_EQ(a.finish, FinishReason::Length);
  EXPECT_EQ(g.n_generated(), static_cast<int>(a.ids.size()));
  // The text is the UTF-8 assembly of the token bytes (random bytes: invalid ones included).
  std::string bytes;
  for (int32_t id : a.ids) bytes += m->token_piece(id);
  TextStream ref;
  EXPECT_EQ(a.text, feed_all(ref, {bytes}));
  Generator again(s, prompt, sampled(40, 7));  // same seed, prefix reused: same tokens
  EXPECT_EQ(run(again).ids, a.ids);
  EXPECT_EQ(again.n_reused(), 4);
}

TEST_F(GeneratorSynth, StopStringCutsExactly) {
  auto m = model();
  akvq::Session s(m, session_params(256));
  const std::vector<int32_t> prompt = {'a', 'b'};
  Generator full_gen(s, prompt, sampled(40, 11));
  const Run full = run(full_gen);
  ASSERT_GE(full.text.size(), 6u);
  const std::string stop = full.text.substr(2, 3);
  if (!valid_utf8(stop)) GTEST_SKIP() << "the sampled text cut a character";
  GenerateParams p = sampled(40, 11);
  p.stop = {stop};
  Generator g(s, prompt, p);
  const Run cut = run(g);
  EXPECT_EQ(cut.finish, FinishReason::Stop);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
}

TEST_F(GeneratorSynth, ContextFullAndZeroTokens) {
  auto m = model();
  akvq::Session s(m, session_params(12));
  const std::vector<int32_t> prompt = {'x', 'y', 'z'};
  Generator g(s, prompt, sampled(100, 3));
  const Run r = run(g);
  if (r.finish == FinishReason::Eos) GTEST_SKIP() << "end-of-generation sampled before the context filled";
  EXPECT_EQ(r.finish, FinishReason::Context);
  EXPECT_EQ(r.ids.size(), 12u - 3u + 1u);  // the last token is sampled but cannot be evaluated
  Generator none(s, prompt, sampled(0, 3));
  GenerateStep st;
  EXPECT_FALSE(none.next(st));
  EXPECT_EQ(none.finish_reason(), FinishReason::Length);
  EXPECT_EQ(s.n_past(), 3);  // the prompt was evaluated
}

TEST_F(GeneratorSynth, BadPromptsAndSessionMisuse) {
  auto m = model();
  akvq::Session s(m, session_params(8));
  EXPECT_THROW(Generator(s, {}, sampled(4, 1)), akvq::InvalidArgument);
  EXPECT_THROW(Generator(s, std::vector<int32_t>(9, 'a'), sampled(4, 1)), akvq::InvalidArgument);
  EXPECT_THROW(Generator(s, {'a', 999}, sampled(4, 1)), akvq::InvalidArgument);
  Generator g(s, {'a', 'b'}, sampled(4, 1));
  GenerateStep st;
  ASSERT_TRUE(g.next(st) || g.finish_reason() == FinishReason::Eos);
  if (g.done()) GTEST_SKIP() << "finished at once";
  s.reset();  // another call changes the session: the generation must not go on from it
  EXPECT_THROW(g.next(st), akvq::Error);
  EXPECT_FALSE(g.next(st));
}

}  // namespace
