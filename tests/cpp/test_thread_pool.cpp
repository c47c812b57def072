// The persistent thread pool: every task runs exactly once, exceptions propagate, many quick
// dispatches in a row work (the per-token pattern of a decoder), workers sleeping or not.
#include <gtest/gtest.h>

#include <akvq/error.h>

#include <atomic>
#include <chrono>
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

// run_ahead: every task once, and each task's `next` is the task that the same thread runs next
// (-1 after its last), whatever the interleaving; exceptions propagate as with run().
TEST(ThreadPool, RunAheadNamesEachThreadsNextTask) {
  for (int n_threads : {1, 2, 4}) {
    ThreadPool pool(n_threads);
    for (int n_tasks : {0, 1, 2, 3, 17, 1000}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(n_tasks);
        std::vector<std::vector<std::pair<int, int>>> seen(n_threads);  // per thread: (task, next) in order
        std::atomic<int> bad{0};
        pool.run_ahead(n_tasks, [&](int task, int next, int thread) {
          if (thread < 0 || thread >= n_threads || next < -1 || next >= n_tasks || next == task) bad.fetch_add(1);
          hits[task].fetch_add(1);
          seen[thread].push_back({task, next});
          if (task % 5 == 0) std::this_thread::yield();  // vary the interleaving
        });
        EXPECT_EQ(bad.load(), 0);
        for (int i = 0; i < n_tasks; ++i) ASSERT_EQ(hits[i].load(), 1) << n_threads << " " << n_tasks << " " << i;
        for (const auto& v : seen) {
          for (size_t k = 0; k < v.size(); ++k) {
            ASSERT_EQ(v[k].second, k + 1 < v.size() ? v[k + 1].first : -1) << n_threads << " " << n_tasks << " " << k;
          }
        }
      }
    }
  }
  ThreadPool pool(3);
  EXPECT_THROW(pool.run_ahead(50, [](int task, int, int) {
    if (task == 7) throw akvq::InvalidArgument("task 7");
  }),
               akvq::InvalidArgument);
  std::atomic<int> n{0};
  pool.run_ahead(100, [&](int, int, int) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 100);
}
