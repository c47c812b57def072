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
  // The same, but each thread claims its next task before it runs the current one, and fn learns
  // it: fn(task, next, thread), next = the task this thread runs after `task`, or -1 if none. For
  // tasks that stream memory: the end of one can request the start of the next (the KV rows of the
  // 2-bit attention's next part, kv/kv_quant_attend.cpp). A claimed task is not shared, so the
  // last tasks balance a little less than with run().
  void run_ahead(int n_tasks, const std::function<void(int task, int next, int thread)>& fn);

  // Default thread count: physical-ish cores available to this process (>= 1).
  static int default_threads();

 private:
  void run_job(int n_tasks, const std::function<void(int, int)>* fn, const std::function<void(int, int, int)>* fn_ahead);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace akvq::cpu
