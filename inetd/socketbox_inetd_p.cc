// socketbox-inetd-p CTLPATH GROUP PROG [ARGS...]: see inetd/options.h.
#include "inetd/inetd_main.h"

int main(int argc, char** argv) {
  return sbx::inetd::InetdMain(sbx::inetd::Mode::kRegistration, argc, argv);
}
