// Which task merges a work item's split-K partials (the attention of kv_f16_attend.cpp and
// kv_quant_attend.cpp): reset(items, n_split) before the job; a task calls last(item) after
// writing its partial, and the one that gets true (the item's last part to finish) merges the
// item's rows (tile::merge_split_partials, the parts in order: the same bits as one merge after
// the job) while other items still run. The atomic decrement orders the other parts' partials
// before that merge.
#pragma once
#include <atomic>
#include <memory>

namespace akvq::kv::tile {

class PartCountdown {
 public:
  void reset(int items, int n_split) {
    if (cap_ < items) left_.reset(new std::atomic<int>[items]), cap_ = items;
    for (int i = 0; i < items; ++i) left_[i].store(n_split, std::memory_order_relaxed);
  }
  bool last(int item) { return left_[item].fetch_sub(1, std::memory_order_acq_rel) == 1; }

 private:
  std::unique_ptr<std::atomic<int>[]> left_;  // [cap_] parts of each item still running
  int cap_ = 0;
};

}  // namespace akvq::kv::tile
