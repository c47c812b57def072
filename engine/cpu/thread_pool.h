// Persistent thread pool: workers are created once and wait (spin briefly, then sleep) for work.
// run(n_tasks, fn) calls fn(task, thread) for every task in [0, n_tasks) across the pool and the
// calling thread, and returns when all are done. Exceptions thrown by fn are rethrown in run()
// (the first one; tasks not yet started are then skipped). A run() issued from inside a task, or
// from another thread while a job is in flight, executes its tasks inline on the calling thread.
#pragma once
#include <functional>
#include <memory>

namespace akvq::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads >= 1 (the caller counts as one)
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  void run(int n_tasks, const std::function<void(int task, int thread)>& fn);

  // Default thread count: physical-ish cores available to this process (>= 1).
  static int default_threads();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq::cpu
