// Scraping over mutual TLS, as Prometheus does with `tls_config: {ca_file, cert_file, key_file}`:
// an HTTP/1.1 GET through OpenSSL itself (no curl or openssl command that might be missing), the
// server's certificate checked against a CA and the address dialled.
#ifndef MESHD_TESTS_SUPPORT_TLS_SCRAPE_H_
#define MESHD_TESTS_SUPPORT_TLS_SCRAPE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/scrape.h"

namespace meshd::testing {

// PEM files. `cert` and `key` empty: the client presents no certificate.
struct TlsClient {
  std::string cert, key;
  std::string ca;  // the server's certificate must chain to it and name the host (IP or DNS SAN)
};

// GET https://<host_port><path> presenting `client`'s certificate. `served_serial`, when given,
// gets the serial of the certificate the server presented, in hex as `openssl x509 -serial` prints
// it ("1002"). Errors: UNAVAILABLE cannot connect, or the handshake or the exchange failed — the
// server refused this client or the client the server (OpenSSL's reason in the message);
// DEADLINE_EXCEEDED no full answer within `timeout`; INTERNAL not an HTTP answer.
absl::StatusOr<HttpResponse> HttpsGet(const std::string& host_port, const std::string& path,
                                      const TlsClient& client,
                                      absl::Duration timeout = absl::Seconds(10),
                                      std::string* served_serial = nullptr);

// Scrapes `url` ("https://127.0.0.1:9464/metrics") and parses it, like Scrape().
absl::StatusOr<std::map<std::string, double>> ScrapeTls(const std::string& url,
                                                        const TlsClient& client);

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_TLS_SCRAPE_H_
