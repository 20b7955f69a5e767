// HTTP GET and the exposition-format parser (see scrape.h).
#include "tests/support/scrape.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshd::testing {

absl::StatusOr<HttpResponse> HttpGet(const std::string& host_port, const std::string& path,
                                     absl::Duration timeout) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("want HOST:PORT");
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host_port.substr(0, colon).c_str(), host_port.substr(colon + 1).c_str(), &hints,
                  &res) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host_port));
  }
  const int fd = socket(res->ai_family, SOCK_STREAM, 0);
  const bool connected = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  if (!connected) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", host_port));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_port,
                                           "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("write failed");
  }
  std::string raw;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[65536];
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    pollfd p{fd, POLLIN, 0};
    if (left <= absl::ZeroDuration() || poll(&p, 1, absl::ToInt64Milliseconds(left) + 1) <= 0) {
      close(fd);
      return absl::DeadlineExceededError(absl::StrCat("no full answer from ", host_port));
    }
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    raw.append(buf, n);
  }
  close(fd);
  return ParseHttpResponse(raw);
}

absl::StatusOr<HttpResponse> ParseHttpResponse(const std::string& raw) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (!absl::StartsWith(raw, "HTTP/1.") || head_end == std::string::npos) {
    return absl::InternalError(absl::StrCat("not an HTTP answer: ", raw.substr(0, 80)));
  }
  HttpResponse r;
  const std::vector<std::string> lines = absl::StrSplit(raw.substr(0, head_end), "\r\n");
  const std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &r.status)) {
    return absl::InternalError(absl::StrCat("bad status line: ", lines[0]));
  }
  bool chunked = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string lower = absl::AsciiStrToLower(lines[i]);
    if (absl::StartsWith(lower, "content-type:")) {
      r.content_type = std::string(absl::StripAsciiWhitespace(lines[i].substr(13)));
    }
    chunked |= absl::StartsWith(lower, "transfer-encoding:") && absl::StrContains(lower, "chunked");
  }
  std::string body = raw.substr(head_end + 4);
  if (chunked) {  // size line, data, CRLF, ..., 0
    std::string plain;
    size_t pos = 0;
    while (pos < body.size()) {
      const size_t eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t size = 0;
      if (!absl::SimpleHexAtoi(body.substr(pos, eol - pos), &size) || size == 0) break;
      plain += body.substr(eol + 2, size);
      pos = eol + 2 + size + 2;
    }
    body = std::move(plain);
  }
  r.body = std::move(body);
  return r;
}

absl::StatusOr<std::map<std::string, double>> ParseExposition(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space == absl::string_view::npos || space == 0) {
      return absl::InvalidArgumentError(absl::StrCat("not 'series value': ", line));
    }
    const absl::string_view v = line.substr(space + 1);
    if (absl::EqualsIgnoreCase(v, "nan")) {
      value = std::numeric_limits<double>::quiet_NaN();
    } else if (!absl::SimpleAtod(v, &value)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value in: ", line));
    }
    out[std::string(line.substr(0, space))] = value;
  }
  return out;
}

absl::StatusOr<std::map<std::string, double>> Scrape(const std::string& url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) return absl::InvalidArgumentError("want http://");
  const size_t slash = rest.find('/');
  const std::string host_port(rest.substr(0, slash));
  const std::string path(slash == absl::string_view::npos ? "/" : rest.substr(slash));
  absl::StatusOr<HttpResponse> r = HttpGet(host_port, path);
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::InternalError(absl::StrCat("HTTP ", r->status));
  if (!absl::StartsWith(r->content_type, "text/plain")) {
    return absl::InternalError(absl::StrCat("content type '", r->content_type, "'"));
  }
  return ParseExposition(r->body);
}

}  // namespace meshd::testing
