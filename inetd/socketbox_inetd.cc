// socketbox-inetd SOCKPATH PROG [ARGS...]: see inetd/options.h.
#include "inetd/inetd_main.h"

int main(int argc, char** argv) {
  return sbx::inetd::InetdMain(sbx::inetd::Mode::kDatagram, argc, argv);
}
