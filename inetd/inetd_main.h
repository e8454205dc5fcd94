// main() of socketbox-inetd and socketbox-inetd-p (they differ only in Mode).
#ifndef SBX_INETD_INETD_MAIN_H_
#define SBX_INETD_INETD_MAIN_H_

#include "inetd/options.h"

namespace sbx::inetd {

int InetdMain(Mode mode, int argc, char** argv);

// Opens /dev/null on any of fds 0, 1, 2 that is closed, so that no socket we
// create or receive lands there (a child would then get it as stdin/stderr).
void EnsureStandardFds();

}  // namespace sbx::inetd

#endif  // SBX_INETD_INETD_MAIN_H_
