// Stop-on-request flags set from signal handlers (only async-signal-safe work).
#ifndef TANDEM_CSIGNALS_H
#define TANDEM_CSIGNALS_H

/// Installs handlers: SIGUSR1 always; SIGINT and SIGTERM too when `interrupts` != 0.
void tandem_install_stop_handlers(int interrupts);
/// The signal that asked to stop, or 0.
int tandem_stop_signal(void);
#endif
