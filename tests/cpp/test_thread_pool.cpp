// The persistent thread pool: every task runs exactly once, exceptions propagate, many quick
// dispatches in a row work (the per-token pattern of a decoder), workers sleeping or not.
#include <gtest/gtest.h>

#include <akvq/error.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cpu/thread_pool.h"

using akvq::cpu::ThreadPool;

TEST(ThreadPool, EveryTaskRunsOnce) {
  for (int n_threads : {1, 2, 4}) {
    ThreadPool pool(n_threads);
    EXPECT_EQ(pool.size(), n_threads);
    for (int n_tasks : {0, 1, 2, 3, 17, 1000}) {
      std::vector<std::atomic<int>> hits(n_tasks);
      std::atomic<int> bad_thread{0};
      pool.run(n_tasks, [&](int task, int thread) {
        hits[task].fetch_add(1);
        if (thread < 0 || thread >= n_threads) bad_thread.fetch_add(1);
      });
      for (int i = 0; i < n_tasks; ++i) ASSERT_EQ(hits[i].load(), 1) << n_threads << " " << n_tasks << " " << i;
      EXPECT_EQ(bad_thread.load(), 0);
    }
  }
}

TEST(ThreadPool, ExceptionsPropagateAndPoolStaysUsable) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.run(50, [](int task, int) {
    if (task == 7) throw akvq::InvalidArgument("task 7");
  }),
               akvq::InvalidArgument);
  EXPECT_THROW(pool.run(1, [](int, int) { throw std::runtime_error("single"); }), std::runtime_error);
  std::atomic<int> n{0};
  pool.run(100, [&](int, int) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 100);
}

TEST(ThreadPool, ManyQuickDispatches) {
  ThreadPool pool(2);
  std::vector<int> out(64);
  long long total = 0;
  for (int it = 0; it < 20000; ++it) {
    pool.run(8, [&](int task, int) {
      for (int j = task * 8; j < task * 8 + 8; ++j) out[j] = it + j;
    });
    total += out[63] - it;
  }
  EXPECT_EQ(total, 20000LL * 63);
}

TEST(ThreadPool, WorkAfterWorkersFellAsleep) {
  ThreadPool pool(4);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // longer than the spin phase
    std::atomic<int> n{0};
    pool.run(64, [&](int, int) { n.fetch_add(1); });
    EXPECT_EQ(n.load(), 64);
  }
}

TEST(ThreadPool, RejectsZeroThreadsAndReportsDefault) {
  EXPECT_THROW(ThreadPool(0), akvq::InvalidArgument);
  EXPECT_GE(ThreadPool::default_threads(), 1);
}

TEST(ThreadPool, NestedRunExecutesInline) {
  ThreadPool pool(2);
  std::vector<std::atomic<int>> hits(8 * 8);
  pool.run(8, [&](int outer, int) {
    pool.run(8, [&](int inner, int) { hits[outer * 8 + inner].fetch_add(1); });
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

// A forked child has none of the pool's workers: a pool made before the fork runs its jobs on the
// calling thread there and is destroyed without waiting for or joining them (it hung in
// pthread_cond_destroy with 2-3 threads and crashed in join with 4-8). A pool made in the child
// has workers of its own. The parent's pool is unaffected.
TEST(ThreadPool, ForkedChildRunsInlineAndDestroysThePool) {
  for (int n_threads : {2, 4, 8}) {
    auto pool = std::make_unique<ThreadPool>(n_threads);
    std::atomic<int> sum{0};
    pool->run(64, [&](int task, int) { sum.fetch_add(task); });
    ASSERT_EQ(sum.load(), 64 * 63 / 2);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // child: no gtest assertions here, the exit status says it
      std::atomic<int> s{0};
      bool only_caller = true;
      const std::thread::id me = std::this_thread::get_id();
      pool->run(64, [&](int task, int) {
        s.fetch_add(task);
        if (std::this_thread::get_id() != me) only_caller = false;
      });
      pool.reset();
      ThreadPool fresh(n_threads);
      std::atomic<int> s2{0};
      fresh.run(64, [&](int task, int) { s2.fetch_add(task); });
      _exit(s.load() == 64 * 63 / 2 && only_caller && s2.load() == 64 * 63 / 2 ? 0 : 1);
    }
    int status = -1;
    pid_t r = 0;
    for (int i = 0; i < 2000 && r == 0; ++i) {  // at most 20 s
      r = waitpid(pid, &status, WNOHANG);
      if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (r == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "the child hung (" << n_threads << " threads)";
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << n_threads << " threads, status " << status;
    sum = 0;
    pool->run(64, [&](int task, int) { sum.fetch_add(task); });
    EXPECT_EQ(sum.load(), 64 * 63 / 2);
  }
}
