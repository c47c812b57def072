// Persistent thread pool. One job at a time: run() publishes the job by bumping a generation
// counter; workers spin on it for 200 microseconds (with a pause instruction) and then
// sleep on a condition variable. Tasks are handed out through an atomic counter; the calling
// thread takes tasks too. run() returns after every worker has left the job.
#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AKVQ_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define AKVQ_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define AKVQ_CPU_RELAX() ((void)0)
#endif

#include <akvq/error.h>

namespace akvq::cpu {

namespace {
// How long an idle worker spins before it sleeps. Waking a sleeping thread costs tens of
// microseconds (more in a VM), and a decode step runs a job every ~100 us with short serial work
// between jobs: spinning through those gaps kept the second core busy (1.1B Q4_0 decode on a 2-core
// Zen 3 VM: 2000 pause iterations, a few microseconds there, gave 20.7-22.8 tokens/s; 50000,
// 22.7-23.3). Timed, since a pause lasts from a few cycles to ~140 depending on the CPU.
constexpr auto kSpinTime = std::chrono::microseconds(200);
constexpr int kSpinCheckEvery = 64;  // pause iterations between clock reads

// Fork: a child process has none of its parent's worker threads (only the forking thread is
// copied), and their mutex / condition variable may be in any state. A pool made before the fork
// must then neither wait for, wake nor join them: it runs its jobs on the calling thread, and its
// destructor leaves the threads' bookkeeping alone (a bounded leak in the child; destroying it
// blocked in pthread_cond_destroy or crashed in join). Counted by a pthread_atfork child handler.
std::atomic<unsigned> g_forks{0};
void note_fork() { g_forks.fetch_add(1, std::memory_order_relaxed); }
unsigned forks_seen() {
  static const bool registered = pthread_atfork(nullptr, nullptr, note_fork) == 0;
  (void)registered;
  return g_forks.load(std::memory_order_relaxed);
}
}  // namespace

struct ThreadPool::Impl {
  int n_threads = 1;
  unsigned forks = 0;  // forks_seen() when the workers started: another value means a forked child
  std::vector<std::thread> workers;

  // Current job; written by run() before the job is published, read by workers only after they
  // have entered the job (see `state`).
  const std::function<void(int, int)>* fn = nullptr;
  int n_tasks = 0;
  alignas(64) std::atomic<int> next{0};
  // (job id << 32) | closed bit | number of workers inside the job. A worker enters only an open
  // job with the id it was woken for, so run() never waits for a worker that is still asleep.
  alignas(64) std::atomic<uint64_t> state{0};
  alignas(64) std::atomic<uint64_t> generation{0};
  alignas(64) std::atomic<int> sleepers{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::atomic<bool> busy{false};  // a job is in flight (nested or concurrent run() goes inline)

  std::mutex mu;
  std::condition_variable cv;
  std::mutex err_mu;
  std::exception_ptr error;

  static constexpr uint64_t kClosed = 1ull << 31;

  void do_tasks(int thread) {
    for (;;) {
      const int t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks || failed.load(std::memory_order_relaxed)) break;
      try {
        (*fn)(t, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }

  bool try_enter(uint64_t job) {
    uint64_t s = state.load(std::memory_order_acquire);
    while ((s >> 32) == (job & 0xffffffffu) && !(s & kClosed)) {
      if (state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }

  void worker_loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = generation.load(std::memory_order_acquire);
      const auto spin_end = std::chrono::steady_clock::now() + kSpinTime;
      for (int i = 1; g == seen; ++i) {
        AKVQ_CPU_RELAX();
        g = generation.load(std::memory_order_acquire);
        if (i % kSpinCheckEvery == 0 && std::chrono::steady_clock::now() >= spin_end) break;
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        cv.wait(lk, [&] {
          return generation.load(std::memory_order_seq_cst) != seen ||
                 stop.load(std::memory_order_relaxed);
        });
        sleepers.fetch_sub(1, std::memory_order_relaxed);
        g = generation.load(std::memory_order_acquire);
      }
      if (stop.load(std::memory_order_acquire)) return;
      seen = g;
      if (try_enter(g)) {
        do_tasks(thread);
        state.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : impl_(std::make_unique<Impl>()) {
  if (n_threads < 1) throw InvalidArgument("[threads] thread count must be >= 1, got " + std::to_string(n_threads));
  impl_->n_threads = n_threads;
  impl_->forks = forks_seen();
  impl_->workers.reserve(n_threads - 1);
  for (int i = 1; i < n_threads; ++i) {
    impl_->workers.emplace_back([this, i] { impl_->worker_loop(i); });
  }
}

ThreadPool::~ThreadPool() {
  if (impl_->forks != forks_seen()) {  // a forked child: the workers are not here (see note_fork)
    (void)impl_.release();
    return;
  }
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop.store(true, std::memory_order_release);
    impl_->generation.fetch_add(1, std::memory_order_seq_cst);  // wakes spinning workers too
  }
  impl_->cv.notify_all();
  for (auto& w : impl_->workers) w.join();
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::run(int n_tasks, const std::function<void(int task, int thread)>& fn) {
  if (n_tasks <= 0) return;
  Impl& s = *impl_;
  // Inline when there is nothing to share, in a forked child (no workers there), and for a run()
  // from inside a task or from a second thread while a job is in flight (thread index 0 is then
  // shared; tasks must not rely on it being exclusive across such nested calls).
  if (s.n_threads == 1 || n_tasks == 1 || s.forks != g_forks.load(std::memory_order_relaxed) ||
      s.busy.exchange(true, std::memory_order_acquire)) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  struct Release {
    std::atomic<bool>& b;
    ~Release() { b.store(false, std::memory_order_release); }
  } release{s.busy};
  const uint64_t job = s.generation.load(std::memory_order_relaxed) + 1;
  s.fn = &fn;
  s.n_tasks = n_tasks;
  s.error = nullptr;
  s.failed.store(false, std::memory_order_relaxed);
  s.next.store(0, std::memory_order_relaxed);
  s.state.store((job & 0xffffffffu) << 32, std::memory_order_relaxed);
  s.generation.store(job, std::memory_order_seq_cst);  // publishes the fields above
  if (s.sleepers.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lk(s.mu); }
    s.cv.notify_all();
  }
  s.do_tasks(0);
  // Close the job once no worker is inside it (those inside may be finishing their last task);
  // workers that have not entered yet will find it closed and skip it.
  const uint64_t open = (job & 0xffffffffu) << 32;
  for (int i = 0;; ++i) {
    uint64_t expect = open;
    if (s.state.compare_exchange_weak(expect, open | Impl::kClosed, std::memory_order_acq_rel)) break;
    if (i < 4000) {  // a worker is finishing a task: short spin, then let it run
      AKVQ_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
  s.fn = nullptr;
  if (s.error) {
    std::exception_ptr e = s.error;
    s.error = nullptr;
    std::rethrow_exception(e);
  }
}

int ThreadPool::default_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc >= 1 ? static_cast<int>(hc) : 1;
}

}  // namespace akvq::cpu
