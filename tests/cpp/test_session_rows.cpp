// Session input rows that are embeddings (SessionInput, Session::eval_rows / eval_all_rows /
// eval_prompt_rows) on the synthetic Llama (F32 weights): an embedding row equal to a token's
// embedding gives that token's results bit for bit; mixed rows are batch-invariant in every KV
// mode; kinds and content hashes per position; prefix reuse compares content; errors roll back.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "akvq/error.h"
#include "akvq/generate.h"
#include "gguf/gguf.h"
#include "test_llama_synth.h"

using namespace akvq;
using akvq::testing::SynthLlama;

namespace {

constexpr int kVocab = 260, kEmbd = 64;

std::vector<int32_t> ids_of(int n, uint32_t seed) {
  std::vector<int32_t> ids(n);
  uint32_t s = seed;
  for (int& id : ids) id = static_cast<int32_t>((s = s * 1664525u + 1013904223u) >> 24);  // [0, 256)
  return ids;
}

class SessionRows : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    synth_ = new SynthLlama(21, false, 0);  // F32 weights: token embedding rows are exact floats
    const auto bytes = synth_->gguf();
    path_ = ::testing::TempDir() + "akvq_session_rows.gguf";
    std::ofstream f(path_, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  static void TearDownTestSuite() {
    delete synth_;
    synth_ = nullptr;
  }
  // The token embedding rows of ids [n, n_embd].
  static std::vector<float> embd_rows(const std::vector<int32_t>& ids) {
    const std::vector<float>& te = synth_->w.at("token_embd.weight");
    std::vector<float> out;
    for (int32_t id : ids) out.insert(out.end(), te.begin() + id * kEmbd, te.begin() + (id + 1) * kEmbd);
    return out;
  }
  static Session make(const std::shared_ptr<Model>& m, int n_batch, const std::string& kv = "f16") {
    SessionParams p;
    p.n_ctx = 128;
    p.n_threads = 2;
    p.n_batch = n_batch;
    p.kv = kv;
    return Session(m, p);
  }
  static SynthLlama* synth_;
  static std::string path_;
};
SynthLlama* SessionRows::synth_ = nullptr;
std::string SessionRows::path_;

// ids[0:8] as tokens, ids[8:24] as embedding rows ("an image"), ids[24:] as tokens.
SessionInput mixed(const std::vector<int32_t>& ids, const std::vector<float>& rows, uint64_t content = 0) {
  SessionInput in;
  in.add_tokens(std::vector<int32_t>(ids.begin(), ids.begin() + 8));
  in.add_embeddings(rows.data() + 8 * kEmbd, 16, kEmbd, TokenKind::Vision, content, 7);
  in.add_tokens(std::vector<int32_t>(ids.begin() + 24, ids.end()));
  return in;
}

}  // namespace

TEST_F(SessionRows, EmbeddingRowsEqualTheirTokens) {
  auto model = Model::load(path_);
  const auto ids = ids_of(40, 3);
  const auto rows = embd_rows(ids);
  std::vector<float> ref(ids.size() * kVocab), got(ids.size() * kVocab);
  Session a(model, SessionParams{});
  a.eval_all(ids, ref.data());
  Session b(model, SessionParams{});
  b.eval_all_rows(mixed(ids, rows), got.data());
  ASSERT_EQ(0, std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)));
  // all rows embeddings
  SessionInput all;
  all.add_embeddings(rows.data(), 40, kEmbd, TokenKind::Text);
  Session c(model, SessionParams{});
  c.eval_all_rows(all, got.data());
  ASSERT_EQ(0, std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)));
}

TEST_F(SessionRows, BatchInvariantInEveryKvMode) {
  auto model = Model::load(path_);
  const auto ids = ids_of(50, 5);
  const auto in = mixed(ids, embd_rows(ids));
  for (const char* kv : {"f16", "akvq2", "akvq4"}) {
    SCOPED_TRACE(kv);
    std::vector<float> ref(ids.size() * kVocab), got(ids.size() * kVocab);
    make(model, 64, kv).eval_all_rows(in, ref.data());
    for (int nb : {1, 5, 17}) {
      Session s = make(model, nb, kv);
      s.eval_all_rows(in, got.data());
      ASSERT_EQ(0, std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float))) << nb;
    }
  }
}

TEST_F(SessionRows, HistoryKindsAndHashes) {
  auto model = Model::load(path_);
  const auto ids = ids_of(30, 7);
  const auto rows = embd_rows(ids);
  Session s = make(model, 8);
  s.eval_rows(mixed(ids, rows));
  ASSERT_EQ(s.n_past(), 30);
  for (int i = 0; i < 30; ++i) {
    const bool img = i >= 8 && i < 24;
    EXPECT_EQ(s.tokens()[i], img ? 7 : ids[i]) << i;
    EXPECT_EQ(s.kinds()[i], img ? TokenKind::Vision : TokenKind::Text) << i;
    EXPECT_EQ(s.row_hashes()[i] != 0, img) << i;
  }
  // hashes: of the row values (identical rows, identical hashes) or of (content id, row index)
  const SessionInput a = mixed(ids, rows), b = mixed(ids, rows), c = mixed(ids, rows, 99), d = mixed(ids, rows, 99);
  EXPECT_EQ(a.hashes(), b.hashes());
  EXPECT_EQ(c.hashes(), d.hashes());
  EXPECT_NE(a.hashes()[8], c.hashes()[8]);
  EXPECT_NE(c.hashes()[8], c.hashes()[9]);
  // slice keeps rows, kinds and hashes
  const SessionInput sl = a.slice(6, 12);
  ASSERT_EQ(sl.size(), 6u);
  EXPECT_FALSE(sl.is_embedding(1));
  EXPECT_TRUE(sl.is_embedding(2));
  EXPECT_EQ(sl.hashes()[3], a.hashes()[9]);
  EXPECT_EQ(0, std::memcmp(sl.embeddings().data(), rows.data() + 8 * kEmbd, 4 * kEmbd * sizeof(float)));
  s.truncate(10);
  EXPECT_EQ(s.kinds().size(), 10u);
  EXPECT_EQ(s.row_hashes().size(), 10u);
}

TEST_F(SessionRows, PrefixReuseComparesContent) {
  auto model = Model::load(path_);
  const auto ids = ids_of(36, 9);
  auto rows = embd_rows(ids);
  Session s = make(model, 16);
  int n = -1;
  s.eval_prompt_rows(mixed(ids, rows), &n);
  EXPECT_EQ(n, 0);
  s.eval_prompt_rows(mixed(ids, rows), &n);
  EXPECT_EQ(n, 35);
  rows[(8 + 5) * kEmbd + 3] += 1.0f;  // the 6th image row changes
  const SessionInput changed = mixed(ids, rows);
  const float* lg = s.eval_prompt_rows(changed, &n);
  EXPECT_EQ(n, 13);
  std::vector<float> got(lg, lg + kVocab), fresh(kVocab);
  Session f = make(model, 16);
  const float* lf = f.eval_rows(changed);
  std::memcpy(fresh.data(), lf, kVocab * sizeof(float));
  EXPECT_EQ(got, fresh);
  // a text prompt with the placeholder id where the image was is not served from the image rows
  std::vector<int32_t> text(ids.begin(), ids.begin() + 12);
  for (int i = 8; i < 12; ++i) text[i] = 7;
  s.eval_prompt(text, TokenKind::Text, &n);
  EXPECT_EQ(n, 8);
}

TEST_F(SessionRows, ErrorsLeaveTheSessionUnchanged) {
  auto model = Model::load(path_);
  const auto ids = ids_of(20, 11);
  Session s = make(model, 4);
  s.eval(std::vector<int32_t>(ids.begin(), ids.begin() + 5));
  std::vector<float> narrow(3 * 32, 0.5f);
  SessionInput bad;
  bad.add_tokens({1, 2});
  bad.add_embeddings(narrow.data(), 3, 32);
  try {
    s.eval_rows(bad);
    FAIL() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("width 32 but the model's n_embd is 64"), std::string::npos) << e.what();
  }
  SessionInput big;
  std::vector<float> many(200 * kEmbd, 0.1f);
  big.add_embeddings(many.data(), 200, kEmbd);
  EXPECT_THROW(s.eval_rows(big), InvalidArgument);
  SessionInput bad_id;
  bad_id.add_embeddings(many.data(), 2, kEmbd);
  bad_id.add_token(kVocab);
  EXPECT_THROW(s.eval_rows(bad_id), InvalidArgument);
  EXPECT_THROW(s.eval_rows(SessionInput{}), InvalidArgument);
  EXPECT_EQ(s.n_past(), 5);
  EXPECT_EQ(s.kinds().size(), 5u);
  EXPECT_EQ(s.row_hashes().size(), 5u);
  // SessionInput's own checks
  SessionInput in;
  EXPECT_THROW(in.add_embeddings(nullptr, 1, kEmbd), InvalidArgument);
  EXPECT_THROW(in.add_embeddings(many.data(), 0, kEmbd), InvalidArgument);
  in.add_embeddings(many.data(), 1, kEmbd);
  EXPECT_THROW(in.add_embeddings(many.data(), 1, kEmbd - 1), InvalidArgument);
  EXPECT_THROW(in.slice(0, 2), InvalidArgument);
}

TEST_F(SessionRows, GeneratorTakesMixedRows) {
  // The generation loop over a prompt with embedding rows: the same tokens as over the token prompt
  // whose embeddings they are (sampled with a fixed seed), and the prefix reuse of a second run.
  auto model = Model::load(path_);
  const auto ids = ids_of(30, 13);
  GenerateParams gp;
  gp.max_tokens = 12;
  gp.sampling.temperature = 1.0f;
  gp.sampling.seed = 5;
  auto run = [&](Session& s, const SessionInput& prompt, int* n_reused) {
    Generator g(s, prompt, gp);
    std::vector<int32_t> out;
    GenerateStep st;
    while (g.next(st)) out.push_back(st.id);
    *n_reused = g.n_reused();
    EXPECT_EQ(g.n_prompt(), 30);
    return out;
  };
  Session a = make(model, 8), b = make(model, 8);
  int n = -1;
  const auto want = run(a, ids, &n);
  const SessionInput in = mixed(ids, embd_rows(ids));
  EXPECT_EQ(run(b, in, &n), want);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(b.kinds()[10], TokenKind::Vision);
  EXPECT_EQ(b.kinds()[30], TokenKind::Generated);
  EXPECT_EQ(run(b, in, &n), want);
  EXPECT_EQ(n, 29);
  // embedding rows of the wrong width are refused before anything is evaluated
  std::vector<float> narrow(2 * 16, 0.0f);
  SessionInput bad;
  bad.add_tokens({1});
  bad.add_embeddings(narrow.data(), 2, 16);
  EXPECT_THROW(Generator(b, bad, gp), InvalidArgument);
}
