// Logging over spdlog (see log.h).
#include "common/log/log.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace meshd::log {
namespace {

std::atomic<Format> g_format{Format::kText};

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out += c;
        }
    }
  }
  return out;
}

spdlog::level::level_enum ToSpd(Level l) {
  switch (l) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

}  // namespace

void Init(Format format, Level level) {
  g_format = format;
  auto logger = spdlog::stderr_logger_mt("meshd");
  logger->set_pattern(format == Format::kJson ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})"
                                              : "%Y-%m-%dT%H:%M:%S.%f %L %v",
                      spdlog::pattern_time_type::utc);
  logger->set_level(ToSpd(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

Level ParseLevel(absl::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  return Level::kInfo;
}

void Write(Level level, absl::string_view message, Fields fields) {
  if (!spdlog::should_log(ToSpd(level))) return;
  std::string line;
  if (g_format == Format::kJson) {
    line = absl::StrCat("\"msg\":\"", JsonEscape(message), "\"");
    for (const auto& [k, v] : fields)
      absl::StrAppend(&line, ",\"", k, "\":\"", JsonEscape(v), "\"");
  } else {
    line = std::string(message);
    for (const auto& [k, v] : fields) {
      if (!v.empty()) absl::StrAppend(&line, " ", k, "=", v);
    }
  }
  spdlog::log(ToSpd(level), "{}", line);
}

}  // namespace meshd::log
