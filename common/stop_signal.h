#pragma once
// Preemption: SIGTERM and SIGUSR1 (Slurm's warning signal, `#SBATCH --signal=B:USR1@120`) only
// set a flag; the trainer finishes its step, writes a checkpoint and exits 0.
namespace some {

// Installs the handlers (idempotent). A second signal of the same kind while the first is still
// being handled falls back to the default action (an impatient user's second Ctrl-C ends it).
void install_stop_signals();
// The signal number received since installation, or 0.
int stop_signal_received();
// Test hook: as if `signo` had arrived.
void request_stop(int signo);

}  // namespace some
