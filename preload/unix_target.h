// Turns a UnixTarget into the Unix socket address to bind or connect to:
// reads the record file (X = 0/1) or builds the directory2 path.
//
// Record files (compatible with the original): $SKBOX_DIRECTORY_ROOT/
// skbox_dir_NNNNN holds 128-byte records; record ZZZZ's first 108 bytes are
// the sun_path, and the first "_@SB_" in it becomes the port as 5 digits.
// Errors: those of open(2)/pread(2) (ENOENT, EACCES, EISDIR...), ERANGE when
// the file is too short for the record (as the original), ENOENT for an
// empty record (first byte NUL), ENAMETOOLONG when a directory2 path does
// not fit sun_path.
#ifndef SBX_PRELOAD_UNIX_TARGET_H_
#define SBX_PRELOAD_UNIX_TARGET_H_

#include <cstddef>
#include <cstdint>

#include "engine/core/unix_address.h"
#include "engine/sys/sys_result.h"
#include "preload/address_plan.h"
#include "preload/env_config.h"

namespace sbx::preload {

constexpr size_t kRecordSize = 128;

// Writes `value` as exactly 5 decimal digits (no NUL).
void FormatFiveDigits(uint16_t value, char* out);

SysResult<UnixAddress> ResolveUnixTarget(const UnixTarget& target, const Config& config);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_UNIX_TARGET_H_
