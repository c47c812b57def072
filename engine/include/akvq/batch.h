// Batched decoding with continuous batching: several generations over one Model, each with its
// own KV cache (a "slot") and position, evaluated together so that every weight matrix is read
// once per step for all of them (decode is memory-bound: throughput grows with the batch).
//
// A request joins or leaves at step boundaries. One step() evaluates, in one forward pass, the
// pending token of every decoding request plus chunks of the prompts being prefilled (at most
// n_batch rows in all: decoding rows first, then prefill chunks in arrival order), so running
// streams keep flowing while a long prompt is read. Each request runs the same GenerationLoop as
// Generator, and every kernel is batch-invariant, so a request's tokens are exactly those a
// Generator on a fresh Session gives (same prompt, params, n_ctx, KV mode), whatever runs beside
// it. A finished request leaves its rows in its slot's cache; a later request whose prompt starts
// with them reuses them (prefix reuse as Session::eval_prompt; the slot with the longest reusable
// prefix is chosen).
//
// Memory: kv_memory (bytes) bounds the KV caches of all slots, each priced at its bound for
// n_ctx tokens (KvCache::bytes_bound), so the 2-bit modes fit proportionally more sequences.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "akvq/engine.h"
#include "akvq/error.h"
#include "akvq/generate.h"

namespace akvq {

struct BatchParams {
  int n_parallel = 4;                             // slots (sequences decoded together) at most, [1, 1024]
  int n_ctx = 4096;                               // context of each sequence in tokens
  int n_threads = 0;                              // 0: default (cores available)
  std::string kv = "f16";                         // KV cache mode of every slot
  std::map<std::string, std::string> kv_options;  // as SessionParams::kv_options
  int n_batch = 256;                              // rows per step at most (decoding rows + prefill chunks); >= 1
  int64_t kv_memory = 0;                          // bytes for all slots' KV caches (0: no budget); slots =
                                                  // min(n_parallel, kv_memory / KvCache::bytes_bound(n_ctx)) >= 1
  int max_queue = 1024;   // requests waiting for a slot at most, beyond those the free slots take
                          // at the next step (submit throws QueueFull beyond)
  void validate() const;  // throws InvalidArgument naming the bad field
};

// What one step did for one request.
struct BatchEvent {
  int64_t id = 0;
  bool has_step = false;                     // step holds a generated token (else the request ended without one)
  GenerateStep step;                         // step.finish is set on the request's last step
  bool done = false;                         // the request ended (its slot is free)
  FinishReason finish = FinishReason::None;  // when done: why (None with error)
  std::string error;                         // when done with an error: what failed (the request's cache is reset)
  int n_prompt = 0, n_reused = 0, n_generated = 0;
};

struct BatchStats {
  int n_slots = 0;
  int running = 0;  // requests holding a slot (prefilling or decoding)
  int queued = 0;   // requests waiting for a slot
  int64_t requests_total = 0, prompt_tokens_total = 0, generated_tokens_total = 0, steps_total = 0;
  int64_t kv_bytes = 0;               // bytes held by the slots' caches now
  int64_t kv_tokens = 0;              // tokens held by the slots' caches now
  double kv_bits_per_element = 0;     // over the held tokens (0 when none)
  int64_t kv_bytes_per_sequence = 0;  // the budget's price of one slot (bytes_bound(n_ctx))
};

class BatchGenerator {
 public:
  // Throws InvalidArgument for bad params (and when kv_memory holds no sequence at all).
  BatchGenerator(std::shared_ptr<const Model> model, const BatchParams& params);
  ~BatchGenerator();
  BatchGenerator(const BatchGenerator&) = delete;
  BatchGenerator& operator=(const BatchGenerator&) = delete;

  const BatchParams& params() const;
  int n_slots() const;
  int64_t kv_bytes_per_sequence() const;

  // Queues a request; returns its id (> 0, increasing). Checks everything Generator checks
  // (InvalidArgument), QueueFull when max_queue requests wait. Nothing is evaluated here.
  int64_t submit(SessionInput prompt, const GenerateParams& params);
  // Ends a queued or running request now: no further event for it; its slot is free for the
  // next step. false when the id is unknown or already ended.
  bool cancel(int64_t id);
  // One step (see the header comment): admits waiting requests to free slots, evaluates, samples.
  // Returns an event per request that produced a token or ended; empty when idle().
  std::vector<BatchEvent> step();
  bool idle() const;  // nothing running or waiting
  BatchStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq
