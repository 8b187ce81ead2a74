#pragma once
// Preemption: SIGTERM and SIGUSR1 (Slurm's warning signal, `#SBATCH --signal=B:USR1@120`) only
// set a flag; the trainer finishes its step, writes a checkpoint and exits 0.
namespace some {

// Installs the handlers (idempotent). A second SIGTERM while the first is being handled ends
// the process at once (an impatient user); SIGUSR1 may arrive more than once (a scheduler and a
// launcher both forwarding it) and only ever asks for the checkpoint.
void install_stop_signals();
// The signal number received since installation, or 0.
int stop_signal_received();
// Test hook: as if `signo` had arrived.
void request_stop(int signo);

}  // namespace some
