// Scraping a Prometheus endpoint the way Prometheus does: an HTTP/1.1 GET over a plain socket (no
// HTTP library), and the text exposition format parsed into series -> value.
#ifndef MESHD_TESTS_SUPPORT_SCRAPE_H_
#define MESHD_TESTS_SUPPORT_SCRAPE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// GET http://<host_port><path>. Errors: UNAVAILABLE cannot connect; DEADLINE_EXCEEDED no full
// answer within `timeout`; INTERNAL not an HTTP answer.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host_port, const std::string& path,
                                     absl::Duration timeout = absl::Seconds(10));

// An HTTP/1.x answer read to the end of the connection: status, content type and the body (a
// chunked one joined). Errors: INTERNAL not an HTTP answer.
absl::StatusOr<HttpResponse> ParseHttpResponse(const std::string& raw);

// Series as printed ("name{label=\"v\",...}", labels as the exporter orders them) -> value.
// Errors: INVALID_ARGUMENT a line that is neither a comment nor "series value".
absl::StatusOr<std::map<std::string, double>> ParseExposition(const std::string& text);

// Scrapes `url` ("http://127.0.0.1:9464/metrics") and parses it; the answer must be 200 with
// Prometheus' text format.
absl::StatusOr<std::map<std::string, double>> Scrape(const std::string& url);

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_SCRAPE_H_
