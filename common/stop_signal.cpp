#include "common/stop_signal.h"

#include <csignal>

namespace some {
namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signo) {
  if (signo == SIGTERM && g_signal == SIGTERM) {  // terminated twice: stop now
    std::signal(signo, SIG_DFL);
    std::raise(signo);
    return;
  }
  g_signal = signo;
}
}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a signal must not fail the I/O it interrupts
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
}

int stop_signal_received() { return g_signal; }

void request_stop(int signo) { g_signal = signo; }

}  // namespace some
