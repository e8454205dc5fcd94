// The end of a tool's output on stdout: the one place where a failed write
// to stdout (a full disk, a closed or broken descriptor) is noticed and
// reported, so that no tool exits 1 without a word.
#ifndef SBX_INETD_STANDARD_OUTPUT_H_
#define SBX_INETD_STANDARD_OUTPUT_H_

namespace sbx::inetd {

// Flushes stdout. If that write, or any earlier one, failed, says so on
// stderr, as the original tools did ("stdout: write error: No space left on
// device", after the program's name), and returns false.
bool FinishStandardOutput();

}  // namespace sbx::inetd

#endif  // SBX_INETD_STANDARD_OUTPUT_H_
