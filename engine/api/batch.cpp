// BatchGenerator: continuous batching over slots (see akvq/batch.h). One step = admit waiting
// requests, one Llama::forward_batch over every decoding token and the prefill chunks, then the
// GenerationLoop of each request.
#include "akvq/batch.h"

#include <algorithm>
#include <deque>
#include <exception>
#include <mutex>
#include <unordered_set>

#include "api/limits.h"
#include "api/model_impl.h"
#include "api/sequence.h"
#include "cpu/thread_pool.h"

namespace akvq {

namespace {
struct Request {
  Request(int64_t id_, SessionInput p, const Model& model, int n_ctx, const GenerateParams& gp)
      : id(id_), prompt(std::move(p)), loop(model, n_ctx, prompt, gp) {}
  int64_t id;
  SessionInput prompt;  // [n_prompt] rows
  GenerationLoop loop;
  int slot = -1;
  size_t n_done = 0;  // prompt rows in the slot's cache (reused + evaluated)
  int n_reused = 0;
  int ckpt = 0;  // the prompt's reuse point (Sequence::checkpoint_position): a chunk ends there
  bool decoding = false;  // the prompt is evaluated; the loop holds a pending token
  GenerateStep step;      // the step begun in the current batch
};
}  // namespace

void BatchParams::validate() const {
  limits::check_range("batch", "n_parallel", n_parallel, 1, limits::kMaxParallel);
  limits::check_range("batch", "n_ctx", n_ctx, 1, limits::kMaxCtx);
  limits::check_range("batch", "n_threads", n_threads, 0, limits::kMaxThreads);
  limits::check_range("batch", "n_batch", n_batch, 1, limits::kMaxBatch);
  limits::check_range("batch", "max_queue", max_queue, 0, limits::kMaxQueue);
  if (kv_memory < 0) throw InvalidArgument("[batch] kv_memory must be >= 0 bytes, got " + std::to_string(kv_memory));
  if (kv.empty()) throw InvalidArgument("[batch] kv: empty storage mode");
}

struct BatchGenerator::Impl {
  std::shared_ptr<const Model> model;
  BatchParams params;
  const models::Llama* llama = nullptr;
  std::unique_ptr<cpu::ThreadPool> pool;
  models::LlamaWorkspace ws;
  std::vector<std::unique_ptr<Sequence>> seqs;  // [n_slots]
  std::vector<std::unique_ptr<Request>> slot;   // [n_slots] the running request, nullptr: free
  std::vector<kv::KvStats> slot_kv;             // [n_slots] each cache's stats after its last change
  int64_t bytes_per_seq = 0;
  std::vector<float> logits;  // [outputs of a step, n_vocab]

  mutable std::mutex mu;  // guards what submit / cancel / stats touch while a step runs
  std::deque<std::unique_ptr<Request>> queue;
  std::unordered_set<int64_t> cancelled;  // running requests to drop at the end of the step
  int64_t next_id = 1;
  BatchStats st;  // counters; kv figures as of the last step

  // Moves waiting requests into free slots (mu held): the free slot with the longest
  // reusable prefix of the prompt is chosen.
  void admit() {
    while (!queue.empty()) {
      int best = -1, best_n = -1;
      for (size_t s = 0; s < slot.size(); ++s) {
        if (slot[s]) continue;
        const int n = seqs[s]->reusable_prefix(queue.front()->prompt);
        if (n > best_n) best = static_cast<int>(s), best_n = n;
      }
      if (best < 0) return;
      std::unique_ptr<Request> r = std::move(queue.front());
      queue.pop_front();
      Sequence& sq = *seqs[best];
      if (best_n < sq.n_past()) {
        sq.truncate(best_n);
        slot_kv[best] = sq.cache->stats();
      }
      r->slot = best;
      r->n_reused = best_n;
      r->n_done = static_cast<size_t>(best_n);
      r->ckpt = Sequence::checkpoint_position(r->prompt);
      sq.cache->set_kinds(r->prompt.kinds().data() + best_n, static_cast<int>(r->prompt.size()) - best_n);
      slot[best] = std::move(r);
    }
  }

  // The KV figures of BatchStats from each slot's cached stats; only the slots a step touched
  // (changed) are asked again (a cache's stats() walks its layers and classes).
  void refresh_kv_stats(const std::vector<int>& changed) {
    for (int s : changed) slot_kv[s] = seqs[s]->cache->stats();
    int64_t bytes = 0, tokens = 0;
    double bits_weighted = 0;
    for (const kv::KvStats& ks : slot_kv) {
      bytes += ks.bytes;
      tokens += ks.n_tokens;
      bits_weighted += ks.bits_per_element * static_cast<double>(ks.n_tokens);
    }
    st.kv_bytes = bytes;
    st.kv_tokens = tokens;
    st.kv_bits_per_element = tokens > 0 ? bits_weighted / static_cast<double>(tokens) : 0.0;
  }

  static BatchEvent event_of(const Request& r) {
    BatchEvent e;
    e.id = r.id;
    e.n_prompt = static_cast<int>(r.prompt.size());
    e.n_reused = r.n_reused;
    e.n_generated = r.loop.n_generated();
    return e;
  }
};

BatchGenerator::BatchGenerator(std::shared_ptr<const Model> model, const BatchParams& params)
    : impl_(std::make_unique<Impl>()) {
  if (!model) throw InvalidArgument("[batch] model is null");
  params.validate();
  Impl& b = *impl_;
  b.model = std::move(model);
  b.params = params;
  b.llama = b.model->impl().llama.get();
  auto first = std::make_unique<Sequence>(*b.model, params.n_ctx, params.kv, params.kv_options);  // validates kv
  b.bytes_per_seq = first->cache->bytes_bound(params.n_ctx);
  int n_slots = params.n_parallel;
  if (params.kv_memory > 0) {
    const int64_t fit = params.kv_memory / std::max<int64_t>(b.bytes_per_seq, 1);
    if (fit < 1) {
      throw InvalidArgument("[batch] kv_memory = " + std::to_string(params.kv_memory) +
                            " bytes holds no sequence: one sequence of n_ctx = " + std::to_string(params.n_ctx) +
                            " tokens in kv mode '" + params.kv + "' needs up to " + std::to_string(b.bytes_per_seq) +
                            " bytes");
    }
    n_slots = static_cast<int>(std::min<int64_t>(n_slots, fit));
  }
  b.seqs.push_back(std::move(first));
  for (int s = 1; s < n_slots; ++s) {
    b.seqs.push_back(std::make_unique<Sequence>(*b.model, params.n_ctx, params.kv, params.kv_options));
  }
  b.slot.resize(n_slots);
  b.slot_kv.resize(n_slots);
  b.pool =
      std::make_unique<cpu::ThreadPool>(params.n_threads > 0 ? params.n_threads : cpu::ThreadPool::default_threads());
  b.st.n_slots = n_slots;
  b.st.kv_bytes_per_sequence = b.bytes_per_seq;
}

BatchGenerator::~BatchGenerator() = default;

const BatchParams& BatchGenerator::params() const {
  return impl_->params;
}
int BatchGenerator::n_slots() const {
  return static_cast<int>(impl_->seqs.size());
}
int64_t BatchGenerator::kv_bytes_per_sequence() const {
  return impl_->bytes_per_seq;
}

int64_t BatchGenerator::submit(SessionInput prompt, const GenerateParams& params) {
  Impl& b = *impl_;
  // checks the prompt and params (InvalidArgument) first, outside the lock
  auto req = std::make_unique<Request>(0, std::move(prompt), *b.model, b.params.n_ctx, params);
  std::lock_guard<std::mutex> lk(b.mu);
  int64_t free_slots = 0;  // the next step admits that many queued requests at once
  for (const auto& r : b.slot) free_slots += !r || b.cancelled.count(r->id) ? 1 : 0;  // cancelled: dropped first
  const int64_t waiting = static_cast<int64_t>(b.queue.size()) - free_slots;
  if (waiting >= b.params.max_queue) {
    throw QueueFull("[batch] the queue is full: " + std::to_string(waiting) +
                    " requests wait for a slot (max_queue = " + std::to_string(b.params.max_queue) + ")");
  }
  req->id = b.next_id++;
  const int64_t id = req->id;
  b.queue.push_back(std::move(req));
  ++b.st.requests_total;
  return id;
}

bool BatchGenerator::cancel(int64_t id) {
  Impl& b = *impl_;
  std::lock_guard<std::mutex> lk(b.mu);
  for (auto it = b.queue.begin(); it != b.queue.end(); ++it) {
    if ((*it)->id == id) {
      b.queue.erase(it);
      return true;
    }
  }
  for (const auto& r : b.slot) {
    if (r && r->id == id) return b.cancelled.insert(id).second;
  }
  return false;
}

bool BatchGenerator::idle() const {
  const Impl& b = *impl_;
  std::lock_guard<std::mutex> lk(b.mu);
  if (!b.queue.empty()) return false;
  for (const auto& r : b.slot) {
    if (r) return false;
  }
  return true;
}

BatchStats BatchGenerator::stats() const {
  const Impl& b = *impl_;
  std::lock_guard<std::mutex> lk(b.mu);
  BatchStats s = b.st;
  s.queued = static_cast<int>(b.queue.size());
  s.running = 0;  // a cancelled request leaves its slot at the next step: not running any more
  for (const auto& r : b.slot) s.running += r && !b.cancelled.count(r->id) ? 1 : 0;
  return s;
}

std::vector<BatchEvent> BatchGenerator::step() {
  Impl& b = *impl_;
  std::vector<BatchEvent> events;
  // ---- plan (lock held): drop cancelled requests, admit, begin the decoding steps ----
  struct Row {
    Request* r;
    int slot;         // r's slot (r may end, and be freed, before the KV figures are taken)
    int len;          // rows of this sequence in the batch
    bool prefill;     // prompt rows (else one generated token)
    bool last_chunk;  // the prompt's last rows: its logits start the generation
  };
  std::vector<Row> rows;
  std::vector<models::LlamaSeq> fw;
  {
    std::lock_guard<std::mutex> lk(b.mu);
    for (auto& r : b.slot) {
      if (r && b.cancelled.count(r->id)) r.reset();
    }
    b.cancelled.clear();
    b.admit();
    int budget = b.params.n_batch;
    for (auto& r : b.slot) {  // every decoding sequence gets its row (even beyond n_batch)
      if (!r || !r->decoding) continue;
      Sequence& sq = *b.seqs[r->slot];
      if (!r->loop.begin_step(r->step, sq.n_past())) {  // its last step: no evaluation
        ++b.st.generated_tokens_total;
        BatchEvent e = Impl::event_of(*r);
        e.has_step = true;
        e.step = std::move(r->step);
        e.done = true;
        e.finish = r->loop.finish_reason();
        events.push_back(std::move(e));
        r.reset();
        continue;
      }
      rows.push_back({r.get(), r->slot, 1, false, false});
      --budget;
    }
    std::vector<Request*> prefilling;  // arrival order (ids increase)
    for (auto& r : b.slot) {
      if (r && !r->decoding) prefilling.push_back(r.get());
    }
    std::sort(prefilling.begin(), prefilling.end(), [](const Request* x, const Request* y) { return x->id < y->id; });
    for (Request* r : prefilling) {
      if (budget <= 0) break;
      const int left = static_cast<int>(r->prompt.size() - r->n_done);
      int len = std::min(left, budget);
      const int done = static_cast<int>(r->n_done);
      if (done < r->ckpt && r->ckpt < done + len) len = r->ckpt - done;  // the checkpoint ends a chunk
      rows.push_back({r, r->slot, len, true, len == left});
      budget -= len;
    }
  }
  if (rows.empty()) return events;

  // ---- evaluate (no lock: submit / cancel / stats go on) ----
  const int64_t nv = b.llama->hparams().n_vocab;
  int n_out = 0;
  for (const Row& w : rows) n_out += (!w.prefill || w.last_chunk) ? 1 : 0;
  if (static_cast<int64_t>(b.logits.size()) < n_out * nv) b.logits.resize(static_cast<size_t>(n_out * nv));
  std::vector<float*> out(rows.size(), nullptr);
  for (size_t i = 0, o = 0; i < rows.size(); ++i) {
    const Row& w = rows[i];
    Sequence& sq = *b.seqs[w.r->slot];
    if (!w.prefill || w.last_chunk) out[i] = b.logits.data() + static_cast<int64_t>(o++) * nv;
    if (w.prefill) {
      fw.push_back(sq.rows(w.r->prompt, w.r->n_done, w.len, out[i], false));
    } else {
      const TokenKind gen = TokenKind::Generated;
      sq.cache->set_kinds(&gen, 1);
      models::LlamaSeq s;
      s.in.ids = &w.r->step.id;
      s.n = 1;
      s.cache = sq.cache.get();
      s.logits = out[i];
      fw.push_back(s);
    }
  }
  std::string error;
  try {
    b.model->impl().forward_batch(fw.data(), static_cast<int>(fw.size()), b.ws, *b.pool);
  } catch (const std::exception& e) {
    error = e.what();
  }

  // ---- results (lock held) ----
  std::lock_guard<std::mutex> lk(b.mu);
  ++b.st.steps_total;
  // The generated rows draw their next tokens side by side on the pool (each request has its own
  // sampler and history, so the draws are those of one at a time); an exception stays with its
  // row and is raised there, in row order, by the loop below.
  std::vector<std::exception_ptr> drawn(rows.size());
  if (error.empty()) {
    b.pool->run(static_cast<int>(rows.size()), [&](int i, int) {
      Request& r = *rows[i].r;
      if (rows[i].prefill || b.cancelled.count(r.id)) return;  // no draw (read-only lookups)
      try {
        r.loop.end_step(r.step, out[i]);
      } catch (...) {
        drawn[i] = std::current_exception();
      }
    });
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& w = rows[i];
    Request& r = *w.r;
    Sequence& sq = *b.seqs[r.slot];
    std::unique_ptr<Request>& owner = b.slot[r.slot];
    if (!error.empty()) {  // a partial step: the caches are not trusted, start them afresh
      sq.truncate(0);
      r.loop.fail();
      BatchEvent e = Impl::event_of(r);
      e.done = true;
      e.error = error;
      events.push_back(std::move(e));
      owner.reset();
      continue;
    }
    if (w.prefill) {
      sq.commit(r.prompt, r.n_done, static_cast<size_t>(w.len));
      r.n_done += static_cast<size_t>(w.len);
      b.st.prompt_tokens_total += w.len;
      if (static_cast<int>(r.n_done) == r.ckpt) sq.cache->checkpoint();
    } else {
      sq.commit_token(r.step.id, TokenKind::Generated);
    }
    if (b.cancelled.count(r.id)) continue;  // dropped at the next step's start, no event
    if (w.prefill) {
      if (!w.last_chunk) continue;
      r.loop.on_prompt(out[i], r.prompt.ids());
      r.decoding = true;
      if (r.loop.done()) {  // ended without a token (max_tokens 0, end-of-generation first)
        BatchEvent e = Impl::event_of(r);
        e.done = true;
        e.finish = r.loop.finish_reason();
        events.push_back(std::move(e));
        owner.reset();
      }
      continue;
    }
    if (drawn[i]) std::rethrow_exception(drawn[i]);  // r.loop.end_step ran above
    ++b.st.generated_tokens_total;
    BatchEvent e = Impl::event_of(r);
    e.has_step = true;
    e.step = std::move(r.step);
    r.step = GenerateStep();
    if (r.loop.done()) {
      e.done = true;
      e.finish = r.loop.finish_reason();
      owner.reset();
    }
    events.push_back(std::move(e));
  }
  std::vector<int> changed;
  changed.reserve(rows.size());
  for (const Row& w : rows) changed.push_back(w.slot);
  b.refresh_kv_stats(changed);
  return events;
}

}  // namespace akvq
