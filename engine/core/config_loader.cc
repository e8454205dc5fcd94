#include "engine/core/config_loader.h"

#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/status/status.h"
#include "engine/core/config_analysis.h"
#include "engine/core/config_parser.h"
#include "engine/core/str_cat.h"

namespace sbx {

absl::StatusOr<LoadedConfig> LoadConfigText(std::string_view text, std::string_view file_name) {
  ParseOutcome parsed = ParseConfig(text, file_name);
  if (!parsed.ok()) return absl::InvalidArgumentError(JoinDiagnostics(parsed.errors));
  LoadedConfig loaded;
  loaded.warnings = std::move(parsed.warnings);
  for (Diagnostic& d : AnalyzeJumps(parsed.model, file_name))
    loaded.warnings.push_back(std::move(d));
  loaded.table = std::make_shared<const RouteTable>(
      RouteTable::Build(parsed.model, file_name, &loaded.warnings));
  return loaded;
}

absl::StatusOr<LoadedConfig> LoadConfigFd(int fd, std::string_view file_name) {
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, StrCat("read ", file_name));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kMaxConfigBytes) {
      return absl::InvalidArgumentError(
          StrCat(file_name, ": larger than ", kMaxConfigBytes, " bytes; refused"));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  return LoadConfigText(text, file_name);
}

}  // namespace sbx
