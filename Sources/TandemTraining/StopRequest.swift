// Stop on request: a signal sets a flag (CSignals); the training step sends it
// with its figures, so every rank stops after the same step, rank 0 writes a
// checkpoint and the job exits 0 with the command that resumes it.

import CSignals
import TandemCore
import TandemKeras

/// Installs the stop-on-request handlers: SIGUSR1 always (mpirun forwards it to
/// every rank; Slurm can send it before a time limit); with `interrupts`, SIGINT
/// and SIGTERM too (local runs only: under mpirun those end the job).
public func installStopHandlers(interrupts: Bool) {
    tandem_install_stop_handlers(interrupts ? 1 : 0)
}

/// True once a stop signal arrived in this process.
package var stopRequestedLocally: Bool { tandem_stop_signal() != 0 }
