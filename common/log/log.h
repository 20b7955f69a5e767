// The one logging wrapper over spdlog. Logs go to stderr (stdout is for a daemon's machine-readable
// lines, e.g. the address it bound), as text ("msg key=value ...") or one JSON object per line.
//
// Thread-safety: every function is thread-safe; Init() should run once at start-up.
#ifndef MESHD_COMMON_LOG_LOG_H_
#define MESHD_COMMON_LOG_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace meshd::log {

enum class Format { kText, kJson };
enum class Level { kDebug, kInfo, kWarn, kError };

// Errors are impossible; an unknown level name falls back to info.
void Init(Format format, Level level);
Level ParseLevel(absl::string_view name);

using Fields = std::initializer_list<std::pair<absl::string_view, std::string>>;
void Write(Level level, absl::string_view message, Fields fields = {});

inline void Debug(absl::string_view m, Fields f = {}) { Write(Level::kDebug, m, f); }
inline void Info(absl::string_view m, Fields f = {}) { Write(Level::kInfo, m, f); }
inline void Warn(absl::string_view m, Fields f = {}) { Write(Level::kWarn, m, f); }
inline void Error(absl::string_view m, Fields f = {}) { Write(Level::kError, m, f); }

}  // namespace meshd::log

#endif  // MESHD_COMMON_LOG_LOG_H_
