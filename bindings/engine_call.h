// EngineCall: releases the GIL around a call into the engine, and makes interpreter exit safe
// while other threads are inside such calls.
//
// The problem: when Python finalizes, a daemon thread that tries to take the GIL back is ended
// by the interpreter (pthread_exit, a forced unwind). From a C++ frame (a GIL-release guard's
// destructor, nanobind's dispatcher) that unwind aborts the process ("terminate called without
// an active exception"), and objects the thread still references are reported as leaks.
//
// The protocol: an atexit hook (engine_shutdown, registered when the extension loads; it runs
// before finalization, after non-daemon threads were joined) marks the engine as shutting down.
// From then on a thread other than the one finalizing that leaves an engine call, or enters a
// new one, parks for good without touching the GIL, as the interpreter itself would park it; the
// hook waits (GIL released, bounded) until no thread is left computing or on its way back into
// the interpreter. When threads are parked or still alive, the objects they reference are never
// freed, which is expected at exit, so nanobind's leak report is turned off then (only then).
#pragma once
#include <nanobind/nanobind.h>

#include <pthread.h>

#include <chrono>
#include <mutex>
#include <thread>

namespace akvq::bind {

struct EngineCallState {
  std::mutex m;
  bool shutdown = false;
  std::thread::id finalizer;  // the thread that runs the exit hook (keeps working normally)
  int computing = 0;          // threads inside an engine call, GIL released
  int returning = 0;          // threads taking the GIL back after an engine call
  int parked = 0;
};

inline EngineCallState& engine_call_state() {
  static EngineCallState* s = new EngineCallState();  // never destroyed: used until the process ends
  return *s;
}

// Fork (os.fork): only the forking thread is copied, and it holds the GIL, so it is in no engine
// call; the counts of the others would make the child's exit hook wait for threads it does not
// have (30 s, or for ever for one that was returning). The state's lock is taken around the fork
// (no other thread holds it in the child) and the child starts with no calls in flight. What
// the parent's other threads referenced (a BatchEngine's worker, a call in flight) is never freed
// in the child, as at exit with threads alive: nanobind's leak report is off there.
inline void engine_call_fork_handlers() {
  pthread_atfork([] { engine_call_state().m.lock(); }, [] { engine_call_state().m.unlock(); },
                 [] {
                   EngineCallState& s = engine_call_state();
                   s.computing = s.returning = s.parked = 0;
                   s.m.unlock();
                   nanobind::set_leak_warnings(false);
                 });
}

[[noreturn]] inline void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

// Use as nb::call_guard<EngineCall>() or as a scoped object (constructed with the GIL held).
class EngineCall {
 public:
  EngineCall() {
    EngineCallState& s = engine_call_state();
    {
      std::unique_lock<std::mutex> lk(s.m);
      if (s.shutdown && std::this_thread::get_id() != s.finalizer) {
        ++s.parked;
        lk.unlock();
        nanobind::set_leak_warnings(false);
        PyEval_SaveThread();
        park_forever();
      }
      ++s.computing;
    }
    state_ = PyEval_SaveThread();
  }
  ~EngineCall() {
    EngineCallState& s = engine_call_state();
    {
      std::unique_lock<std::mutex> lk(s.m);
      --s.computing;
      if (s.shutdown && std::this_thread::get_id() != s.finalizer) {
        ++s.parked;
        lk.unlock();
        park_forever();
      }
      ++s.returning;
    }
    PyEval_RestoreThread(state_);
    std::lock_guard<std::mutex> lk(s.m);
    --s.returning;
  }
  EngineCall(const EngineCall&) = delete;
  EngineCall& operator=(const EngineCall&) = delete;

 private:
  PyThreadState* state_ = nullptr;
};

// threading.main_thread().ident: the only thread that runs signal handlers (set by init_model).
inline unsigned long& main_thread_ident() {
  static unsigned long id = 0;
  return id;
}

// SessionParams::interrupt for Python: on the main thread, and not while the interpreter shuts
// down, takes the GIL and runs the pending signal handlers; a handler that raised (Ctrl-C's
// KeyboardInterrupt) stops the engine call with that exception.
inline void check_python_signals() {
  if (PyThread_get_thread_ident() != main_thread_ident()) return;  // no GIL needed
  {
    EngineCallState& s = engine_call_state();
    std::lock_guard<std::mutex> lk(s.m);
    if (s.shutdown) return;
  }
  nanobind::gil_scoped_acquire g;
  if (PyErr_CheckSignals() != 0) throw nanobind::python_error();
}

// The exit hook (GIL held). others_alive: threads other than this one are still running (their
// objects outlive the interpreter). Waits at most max_wait_s for engine calls to end or park.
inline void engine_shutdown(bool others_alive, double max_wait_s) {
  EngineCallState& s = engine_call_state();
  {
    std::lock_guard<std::mutex> lk(s.m);
    s.shutdown = true;
    s.finalizer = std::this_thread::get_id();
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    int computing = 0, returning = 0, parked = 0;
    {
      std::lock_guard<std::mutex> lk(s.m);
      computing = s.computing;
      returning = s.returning;
      parked = s.parked;
    }
    if (others_alive || computing > 0 || parked > 0) nanobind::set_leak_warnings(false);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Threads on their way back need the GIL to get out of C++; never finalize before they have.
    if (returning == 0 && (computing == 0 || waited > max_wait_s)) return;
    PyThreadState* ts = PyEval_SaveThread();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    PyEval_RestoreThread(ts);
  }
}

}  // namespace akvq::bind
